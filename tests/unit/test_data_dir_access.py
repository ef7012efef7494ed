"""`fluxforge config check` warns when the sandboxed units cannot write data_dir (issue 17, item 11).

Here with what `systemctl show` prints for the units (parsed by the same code); the boot test
tests/appliance/test_5_data_dir.py checks it against a real systemd with the documented drop-in."""
from __future__ import annotations

import subprocess
from pathlib import Path

from fluxforge.config import Config
from fluxforge.observe import data_dir_access
from fluxforge.observe.unit_states import parse_show

SHOW = """Id=fluxforge-collector.service
LoadState=loaded
ReadWritePaths={rw}
StateDirectory=fluxforge

Id=fluxforge-etl.service
LoadState=loaded
ReadWritePaths={rw}
StateDirectory=fluxforge

Id=fluxforge-sync.service
LoadState=not-found
ReadWritePaths=
StateDirectory=
"""


def units(rw: str) -> dict[str, list[Path]]:
    return {u["Id"]: data_dir_access.writable_paths(u) for u in parse_show(SHOW.format(rw=rw))
            if u["LoadState"] == "loaded"}


def cfg(path: str) -> Config:
    return Config.model_validate({"data_dir": path})


def test_default_data_dir_is_writable_through_state_directory():
    assert data_dir_access.warnings(cfg("/var/lib/fluxforge"), units("")) == []
    assert data_dir_access.warnings(cfg("/var/lib/fluxforge/sub"), units("")) == []


def test_custom_data_dir_without_drop_in_warns_per_unit_with_the_fix():
    lines = data_dir_access.warnings(cfg("/srv/fluxforge"), units(""))
    assert len(lines) == 2 and all("ReadWritePaths=/srv/fluxforge" in l for l in lines)
    assert "fluxforge-collector.service.d/60-data-dir.conf" in lines[0]
    assert data_dir_access.warnings(cfg("/var/lib/fluxforgeX"), units("")) != []  # a prefix is not a parent


def test_drop_in_path_silences_the_warning():
    assert data_dir_access.warnings(cfg("/srv/fluxforge"), units("-/srv/fluxforge")) == []
    assert data_dir_access.warnings(cfg("/srv/fluxforge/data"), units("/srv/fluxforge /tmp/x")) == []


def test_inside_a_unit_the_kernel_is_asked(mount_tmpfs, monkeypatch):
    fs = mount_tmpfs("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    monkeypatch.setenv("INVOCATION_ID", "0123")
    lines = data_dir_access.warnings(cfg(str(fs / "data")), {})
    assert len(lines) == 1 and "is not writable here" in lines[0]
    monkeypatch.delenv("INVOCATION_ID")
    assert data_dir_access.warnings(cfg(str(fs / "data")), {}) == []
