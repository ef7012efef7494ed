"""Import `fluxforge/` from the boot partition into /etc, validated before anything is replaced.

Why this order: the hostname and `authorized_keys` go first, so the user can SSH in
even when the config is wrong.  The config is validated by `fluxforge config check`
on a staging copy, with the credentials it references, and only a valid one replaces
/etc/fluxforge/config.yaml: a typo on the card never loses the working config.  The
secrets leave the FAT partition (which has no permissions) only once they are safely
in /etc/fluxforge/credentials (0700 root, files 0600).  A problem is written back to
`fluxforge/config.error.txt` on the same partition, where the user sees it on their
laptop.  Running it again with the same files changes nothing.
"""
from __future__ import annotations

import grp
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..config_refs import CREDENTIAL_PREFIX
from ..fsio import atomic_path, fsync_dir

# The Raspberry Pi's FAT partition (Debian's raspi-firmware mounts it here), then the
# EFI system partition of a VM / cloud image (Debian's usual ESP mount point).
BOOT_DIRS = (Path("/boot/firmware"), Path("/boot/efi"))
SOURCE_DIR = "fluxforge"
CONFIG_FILE = "config.yaml"
ERROR_FILE = "config.error.txt"
CREDENTIALS_DIR = "credentials"
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*$")
CREDENTIAL_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
SSH_KEY_TYPE_RE = re.compile(r"(^|\s)(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.\-]+)\s+[A-Za-z0-9+/=]+")


class BootImportError(Exception):
    """One problem with the boot partition's files; the message is the line the user reads."""


@dataclass(frozen=True)
class HostPaths:
    """Where the imported files go (the real host by default; a test points them elsewhere)."""

    etc: Path = Path("/etc/fluxforge")
    hostname_file: Path = Path("/etc/hostname")
    ssh_dir: Path = Path("/root/.ssh")
    group: str = "fluxforge"
    set_live_hostname: bool = True


@dataclass
class Outcome:
    """What one run did: the files it imported, and the problems written to config.error.txt."""

    source: Path
    imported: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def find_source(boot_dirs: tuple[Path, ...] | list[Path] = BOOT_DIRS) -> Path | None:
    """The first `<boot>/fluxforge/` that holds a config.yaml, or None (nothing to import)."""
    for boot in boot_dirs:
        if (boot / SOURCE_DIR / CONFIG_FILE).is_file():
            return boot / SOURCE_DIR
    return None


def run_import(src: Path, host: HostPaths = HostPaths()) -> Outcome:
    """Import everything under `src`; on any problem write config.error.txt and leave /etc's config alone."""
    out = Outcome(src)
    for step in (_import_hostname, _import_authorized_keys):
        try:
            if step(src, host):
                out.imported.append(step.__name__.removeprefix("_import_"))
        except BootImportError as e:
            out.errors.append(str(e))
    try:
        credentials = read_credentials(src)
        config = (src / CONFIG_FILE).read_bytes()
    except BootImportError as e:
        out.errors.append(str(e))
    except OSError as e:
        out.errors.append(f"{SOURCE_DIR}/{CONFIG_FILE}: cannot read: {e.strerror}")
    else:
        problem = check_config(config, {**existing_credentials(host), **credentials})
        if problem:
            out.errors.insert(0, problem)
        if not out.errors:
            _install(src, host, config, credentials, out)
    if out.errors:
        _write_boot_file(src / ERROR_FILE, "".join(f"{line}\n" for line in out.errors))
    else:
        (src / ERROR_FILE).unlink(missing_ok=True)
    return out


def check_config(config: bytes, credentials: dict[str, bytes]) -> str | None:
    """`fluxforge config check` on a staging copy; None if valid, else its one-line error
    naming the field (with the boot partition's path instead of the staging one)."""
    stage = Path(tempfile.mkdtemp(prefix="fluxforge-firstboot-"))
    try:
        (stage / CONFIG_FILE).write_bytes(config)
        creds = stage / "credentials"
        creds.mkdir(mode=0o700)
        for name, value in credentials.items():
            (creds / f"{CREDENTIAL_PREFIX}{name}").write_bytes(value)
        env = {**os.environ, "CREDENTIALS_DIRECTORY": str(creds)}
        env.pop("FLUXFORGE_CONFIG", None)
        proc = subprocess.run([sys.executable, "-m", "fluxforge.cli", "config", "check", "--config",
                               str(stage / CONFIG_FILE)], env=env, capture_output=True, text=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if proc.returncode == 0:
        return None
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    line = lines[-1] if lines else f"fluxforge config check exited {proc.returncode}"
    line = line.removeprefix("fluxforge: config error: ")
    return line.replace(str(stage / CONFIG_FILE), f"{SOURCE_DIR}/{CONFIG_FILE}").replace(str(creds), "credentials")


def read_credentials(src: Path) -> dict[str, bytes]:
    """`fluxforge/credentials/<name>` files; each becomes the credential fluxforge_<name>."""
    cdir = src / CREDENTIALS_DIR
    if not cdir.is_dir():
        return {}
    found = {}
    for path in sorted(cdir.iterdir()):
        if not path.is_file():
            continue
        if not CREDENTIAL_NAME_RE.match(path.name):
            raise BootImportError(f"{SOURCE_DIR}/{CREDENTIALS_DIR}/{path.name}: a credential name may only hold "
                                  "letters, digits, '_', '.' and '-'")
        found[path.name] = path.read_bytes()
    return found


def existing_credentials(host: HostPaths) -> dict[str, bytes]:
    cdir = host.etc / CREDENTIALS_DIR
    if not cdir.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(cdir.iterdir()) if p.is_file() and not p.name.startswith(".")}


def _install(src: Path, host: HostPaths, config: bytes, credentials: dict[str, bytes], out: Outcome) -> None:
    """Credentials (root 0600), then the config (0640 root:<group>), then the secrets off the FAT."""
    try:
        gid = grp.getgrnam(host.group).gr_gid
    except KeyError:
        out.errors.append(f"group {host.group!r} does not exist (is the fluxforge package configured?)")
        return
    cdir = host.etc / CREDENTIALS_DIR
    cdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, value in credentials.items():
        _write_private(cdir / name, value, 0o600, 0 if os.geteuid() == 0 else -1)
        out.imported.append(f"credential {name}")
    _write_private(host.etc / CONFIG_FILE, config, 0o640, gid)
    out.imported.append(CONFIG_FILE)
    for name in credentials:
        (src / CREDENTIALS_DIR / name).unlink(missing_ok=True)
    if credentials:
        fsync_dir(src / CREDENTIALS_DIR)


def _write_private(final: Path, data: bytes, mode: int, gid: int) -> None:
    """Atomic write whose temp file has its final mode and group before it gets its name."""
    if final.is_file() and final.read_bytes() == data and (final.stat().st_mode & 0o777) == mode \
            and (gid == -1 or final.stat().st_gid == gid):
        return
    with atomic_path(final) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if os.geteuid() == 0:
            os.chown(tmp, 0, gid)
        os.chmod(tmp, mode)


def _import_hostname(src: Path, host: HostPaths) -> bool:
    path = src / "hostname"
    if not path.is_file():
        return False
    lines = path.read_text(errors="replace").split()
    name = lines[0] if lines else ""
    if not HOSTNAME_RE.match(name):
        raise BootImportError(f"{SOURCE_DIR}/hostname: {name!r} is not a valid host name "
                              "(letters, digits and '-', dot-separated labels of at most 63)")
    if not (host.hostname_file.is_file() and host.hostname_file.read_text().strip() == name):
        with atomic_path(host.hostname_file) as tmp:
            tmp.write_text(name + "\n")
            tmp.chmod(0o644)
    if host.set_live_hostname and socket.gethostname() != name:
        socket.sethostname(name)
    return True


def _import_authorized_keys(src: Path, host: HostPaths) -> bool:
    """Adds the keys root does not have yet (never removes one an operator added)."""
    path = src / "authorized_keys"
    if not path.is_file():
        return False
    keys = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not SSH_KEY_TYPE_RE.search(line):
            raise BootImportError(f"{SOURCE_DIR}/authorized_keys line {n}: not an SSH public key "
                                  "(expected e.g. 'ssh-ed25519 AAAA... user@laptop')")
        keys.append(line)
    target = host.ssh_dir / "authorized_keys"
    have = target.read_text().splitlines() if target.is_file() else []
    new = [k for k in keys if k not in {h.strip() for h in have}]
    if new:
        host.ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(host.ssh_dir, 0o700)
        with atomic_path(target) as tmp:
            tmp.write_text("".join(f"{k}\n" for k in have + new))
            tmp.chmod(0o600)
    return bool(keys)


def _write_boot_file(path: Path, text: str) -> None:
    """A file on the FAT partition, for the user to read on their laptop."""
    if path.is_file() and path.read_text(errors="replace") == text:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text)
