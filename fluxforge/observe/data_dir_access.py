"""Can the FluxForge units write `data_dir`?  The check behind `fluxforge config check`'s warning.

Why: the units run with `ProtectSystem=strict`, so the whole file system is
read-only to them except `StateDirectory=` (/var/lib/fluxforge) and the paths a
drop-in adds with `ReadWritePaths=`.  A `data_dir` elsewhere without such a
drop-in validates fine and then fails at the first write, inside the sandbox,
where an operator does not look.  So when systemd is the init system and the
units are installed, the writable paths each unit will get are compared with
`data_dir`; inside a unit (INVOCATION_ID set) the real access is tested too.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..config import Config
from .unit_states import DATA_JOBS, SERVICES, parse_show, systemd_present

WRITERS = SERVICES + DATA_JOBS   # every unit that writes below data_dir
DROPIN = "/etc/systemd/system/{unit}.d/60-data-dir.conf"


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def writable_paths(show: dict[str, str]) -> list[Path]:
    """The paths a unit may write, from `systemctl show -p ReadWritePaths,StateDirectory`."""
    out = [Path(p.lstrip("-+")) for p in show.get("ReadWritePaths", "").split() if p.lstrip("-+")]
    out += [Path("/var/lib") / d for d in show.get("StateDirectory", "").split()]
    return out


def unit_writable_paths(units: tuple[str, ...] = WRITERS) -> dict[str, list[Path]] | None:
    """unit -> writable paths for each installed unit; None when systemd is absent or silent."""
    if not systemd_present():
        return None
    try:
        proc = subprocess.run(["systemctl", "show", "--no-pager", "--property=Id,LoadState,ReadWritePaths,"
                               "StateDirectory", *units], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {u["Id"]: writable_paths(u) for u in parse_show(proc.stdout)
            if u.get("Id") and u.get("LoadState") == "loaded"}


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def warnings(cfg: Config, units: dict[str, list[Path]] | None = None) -> list[str]:
    """One line per problem; [] when data_dir is writable for every installed unit (or no systemd)."""
    data_dir = Path(os.path.abspath(cfg.data_dir))
    out = []
    if os.environ.get("INVOCATION_ID"):  # running inside a unit: ask the kernel
        probe = _nearest_existing(data_dir)
        if not os.access(probe, os.W_OK):
            out.append(f"data_dir {data_dir} is not writable here ({probe} refuses writes): "
                       f"see docs/operations.md, 'data_dir on another path'")
    units = unit_writable_paths() if units is None else units
    for unit, paths in sorted((units or {}).items()):
        if not any(_under(data_dir, p) for p in paths):
            out.append(f"data_dir {data_dir} is read-only for {unit} (ProtectSystem=strict): add "
                       f"ReadWritePaths={data_dir} in {DROPIN.format(unit=unit)}, then systemctl daemon-reload "
                       f"(docs/operations.md, 'data_dir on another path')")
    return out
