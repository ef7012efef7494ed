#!/usr/bin/env python3
"""Build fluxforge_<version>_<arch>.deb inside a clean debootstrap bookworm root.

Why a clean root: the venv under /opt/fluxforge must be built by the same
python3 the target runs (Debian bookworm's), with nothing from the developer's
machine leaking in.  The root is bootstrapped once and cached outside the repo
(see buildroot.py); each build runs `dpkg-buildpackage` on a throwaway overlay of
it with the working tree copied in, PyPI downloads cached in the build cache, then
checks the result with lintian (no errors allowed).

    packaging/build_deb.py [--arch amd64|arm64] [--out dist]

arm64 (Raspberry Pi): run it on an arm64 machine, or here under qemu-user
emulation (`make deb-arm64`: needs qemu-user-static and binfmt_misc).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import buildroot  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SOURCE_EXCLUDES = {".venv", ".git", "build", "dist", "out", "demo-output", ".pytest_cache", ".hypothesis"}


def native_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def source_files(repo: Path) -> list[Path]:
    """Tracked and untracked-but-not-ignored files (a dev build includes uncommitted work)."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             check=True, capture_output=True).stdout
        files = [Path(p) for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = [p.relative_to(repo) for p in repo.rglob("*") if p.is_file()]
    return [f for f in files
            if f.parts and f.parts[0] not in SOURCE_EXCLUDES and (repo / f).is_file()
            and not f.name.endswith((".so", ".c", ".deb", ".pyc"))]


def copy_source(repo: Path, dest: Path) -> None:
    for rel in source_files(repo):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target)
    shutil.copytree(repo / "packaging" / "debian", dest / "debian", dirs_exist_ok=True)


def ensure_binfmt(arch: str) -> bool:
    """Foreign-arch builds run the root's binaries through qemu-user-static via binfmt_misc.
    Returns True when binfmt_misc was mounted here (the caller unmounts it afterwards)."""
    if arch == native_arch():
        return False
    qemu = {"arm64": "qemu-aarch64"}.get(arch)
    if qemu is None:
        raise SystemExit(f"build_deb: no emulation set up for {arch}")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    mounted = False
    if not (binfmt / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], check=True)
        mounted = True
    if not (binfmt / qemu).exists():
        subprocess.run(["update-binfmts", "--enable", qemu], check=True)
    flags = next((line.split(":", 1)[1].strip() for line in (binfmt / qemu).read_text().splitlines()
                  if line.startswith("flags:")), "")
    if "F" not in flags:  # F: the interpreter is opened now, so it works inside the root too
        print(f"build_deb: warning: {qemu} binfmt entry lacks the F flag; the build root cannot run it",
              file=sys.stderr)
    return mounted


def pypi_access(env: dict[str, str]) -> tuple[list[tuple[Path, str]], dict[str, str]]:
    """Carry the host's way to PyPI into the root: its CA bundle (TLS-inspecting
    proxies add their own CA there), proxy settings and an index mirror if set."""
    binds: list[tuple[Path, str]] = []
    extra: dict[str, str] = {}
    for candidate in (env.get("PIP_CERT"), env.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            binds.append((Path(candidate).resolve(), "/etc/ssl/host-ca-bundle.crt"))
            extra["PIP_CERT"] = "/etc/ssl/host-ca-bundle.crt"
            break
    for key in ("PIP_INDEX_URL", "PIP_TIMEOUT", "PIP_DEFAULT_TIMEOUT", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                "http_proxy", "https_proxy", "no_proxy"):
        if env.get(key):
            extra[key] = env[key]
    return binds, extra


def lintian_argv(deb: Path) -> list[str]:
    """lintian exits non-zero on any error tag (overridden tags excepted)."""
    return ["lintian", "--fail-on", "error", str(deb)]


def run_lintian(deb: Path) -> None:
    proc = subprocess.run(lintian_argv(deb), capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"build_deb: lintian reports errors for {deb.name}")
    print(f"build_deb: lintian: no errors for {deb.name}")


def build(arch: str, out: Path, lintian: bool = True) -> Path:
    started = time.monotonic()
    mounted_binfmt = ensure_binfmt(arch)
    try:
        result = _build_in_root(arch, out)
    finally:
        if mounted_binfmt:
            subprocess.run(["umount", "/proc/sys/fs/binfmt_misc"], check=False)
    print(f"build_deb: {result} ({result.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - started:.0f} s")
    if lintian:
        run_lintian(result)
    return result


def _build_in_root(arch: str, out: Path) -> Path:
    root = buildroot.cached_root("build", arch)
    pip_cache = buildroot.CACHE / f"pip-{arch}"
    pip_cache.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    with buildroot.Overlay(root, f"ffbuild-{arch}") as ov:
        src = ov.merged / "build" / "fluxforge"
        copy_source(REPO, src)
        print(f"build_deb: dpkg-buildpackage in a clean bookworm {arch} root ({root.name})", flush=True)
        binds, env = pypi_access(dict(os.environ))
        env.update({"DEB_BUILD_OPTIONS": os.environ.get("DEB_BUILD_OPTIONS", "nocheck"), "HOME": "/root"})
        buildroot.nspawn_run(ov.merged, ["dpkg-buildpackage", "-b", "-us", "-uc"],
                             binds=[(pip_cache, "/root/.cache/pip")], ro_binds=binds, chdir="/build/fluxforge", env=env)
        debs = sorted((ov.merged / "build").glob(f"fluxforge_*_{arch}.deb"))
        if len(debs) != 1:
            raise SystemExit(f"build_deb: expected one .deb, found {[d.name for d in debs]}")
        result = out / debs[0].name
        shutil.copy2(debs[0], result)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default=native_arch(), help="Debian architecture (default: this machine's)")
    ap.add_argument("--out", type=Path, default=REPO / "dist", help="directory for the .deb (default: dist/)")
    ap.add_argument("--no-lintian", action="store_true", help="skip the lintian check")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("build_deb: needs root (debootstrap, mount, systemd-nspawn)", file=sys.stderr)
        return 1
    try:
        build(args.arch, args.out.resolve(), lintian=not args.no_lintian)
    except (buildroot.RootError, subprocess.CalledProcessError) as e:
        print(f"build_deb: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
