"""The built .deb itself: lintian clean, and the layout and maintainer scripts the
issue asks for (venv under /opt, /usr/bin/fluxforge, the conffile, units, sysusers;
no oneshot ever started by apt; no byte code shipped)."""
from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path


def test_lintian_reports_no_errors(lintian_run):
    proc, log = lintian_run
    rc = proc.wait(timeout=900)
    text = log.read_text()
    errors = [line for line in text.splitlines() if line.startswith("E:")]
    assert rc == 0 and not errors, f"lintian (see {log}):\n" + "\n".join(errors[:40])


def package_listing(deb: Path) -> dict[str, str]:
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in out.splitlines():
        parts = line.split(None, 5)
        name = parts[5].split(" -> ")[0].removeprefix(".")
        entries[name.rstrip("/") or "/"] = parts[0]
    return entries


def control_file(deb: Path, name: str) -> str:
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["dpkg-deb", "-e", str(deb), d], check=True)
        path = Path(d) / name
        return path.read_text() if path.exists() else ""


def test_layout(deb_package):
    files = package_listing(deb_package)
    for unit in ("fluxforge.target", "fluxforge-collector.service", "fluxforge-etl.service",
                 "fluxforge-compact.service", "fluxforge-compact.timer", "fluxforge-sync.service", "fluxforge-sync.timer"):
        assert f"/lib/systemd/system/{unit}" in files, unit
    assert files["/usr/bin/fluxforge"].startswith("l"), "/usr/bin/fluxforge is a symlink into the venv"
    assert "/opt/fluxforge/bin/python3" in files
    assert any(re.match(r"/opt/fluxforge/lib/python3\.\d+/site-packages/fluxforge/_kernels/\w+\..*\.so$", f)
               for f in files), "compiled kernels missing from the venv"
    assert "/usr/lib/sysusers.d/fluxforge.conf" in files and "/usr/lib/tmpfiles.d/fluxforge.conf" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")], "byte code belongs to postinst"
    assert control_file(deb_package, "conffiles").split() == ["/etc/fluxforge/config.yaml"]
    assert files["/etc/fluxforge/config.yaml"] == "-rw-r-----", "the config may hold secrets"


def test_maintainer_scripts(deb_package):
    postinst = control_file(deb_package, "postinst")
    assert "systemd-sysusers" in postinst and "systemd-tmpfiles" in postinst
    assert postinst.index("systemd-sysusers") < postinst.index("systemd-tmpfiles"), "user before chown"
    starts = [line for line in postinst.splitlines() if "deb-systemd-invoke" in line]
    assert starts and all("fluxforge-sync.service" not in s and "fluxforge-compact.service" not in s for s in starts), \
        f"apt must never run a oneshot: {starts}"
    assert "'fluxforge.target'" in " ".join(starts)
    postrm = control_file(deb_package, "postrm")
    assert "FLUXFORGE_PURGE_DATA" in postrm and "userdel" in postrm


def test_every_subpackage_is_packaged(deb_package):
    """An editable dev install finds every module; a real install only what pyproject lists."""
    from conftest import REPO

    files = package_listing(deb_package)
    site = next(f for f in files if re.match(r"/opt/fluxforge/lib/python3\.\d+/site-packages/fluxforge$", f))
    for init in sorted((REPO / "fluxforge").rglob("__init__.py")):
        rel = init.relative_to(REPO).as_posix()
        assert f"{site.rsplit('/', 1)[0]}/{rel}" in files, f"{init.parent.name} is missing from the package"


def test_the_venv_is_the_pinned_set(deb_package):
    """Every distribution in /opt/fluxforge is the version constraints.txt pins (the set `make test`
    ran), so two builds of one commit ship the same venv; a package the lock does not know fails too."""
    import lock_deps  # packaging/, on the path as conftest's build_deb is

    pins = lock_deps.read_pins()
    shipped = {}
    for path in package_listing(deb_package):
        m = re.match(r"/opt/fluxforge/lib/python3\.\d+/site-packages/([^/]+)-([^-/]+)\.dist-info$", path)
        if m:
            shipped[lock_deps.canonical(m.group(1))] = m.group(2)
    assert shipped.pop("fluxforge", None), f"no fluxforge dist-info among {sorted(shipped)}"
    assert {"ccxt", "pyarrow", "numpy", "distributed", "pip"} <= set(shipped), sorted(shipped)
    differ = {n: f"{v}, pinned {pins.get(n)}" for n, v in shipped.items() if pins.get(n) != v}
    assert not differ, f"the .deb's venv is not constraints.txt's: {differ}"
