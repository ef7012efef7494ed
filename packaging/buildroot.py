"""Cached debootstrap bookworm roots, and throwaway systemd-nspawn containers on them.

Why: the .deb is built in a clean bookworm with Debian's own python3 (so the venv
matches the target interpreter), and the appliance test boots real systemd in a
clean bookworm.  debootstrap takes a minute or two, so each root is bootstrapped
once into a cache OUTSIDE the repository (default /var/cache/fluxforge-build,
override with $FLUXFORGE_BUILD_CACHE) and every use runs on an overlayfs whose
upper layer is thrown away: the cached root stays pristine, a use starts in a
second, and nothing a build or test does leaks into the next one.

Everything here needs root (debootstrap, mount, nspawn).  Processes started here
are stopped by their own pid; mounts made here are unmounted here.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

CACHE = Path(os.environ.get("FLUXFORGE_BUILD_CACHE", "/var/cache/fluxforge-build"))
MIRROR = os.environ.get("FLUXFORGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"

# What each kind of root holds on top of debootstrap's minbase.
ROOT_PACKAGES = {
    # dpkg-buildpackage + debhelper + Debian's python3 and headers for the Cython kernels.
    "build": ["build-essential", "debhelper", "python3", "python3-dev", "python3-venv", "ca-certificates"],
    # What a freshly flashed Pi / cloud image has: systemd as init, sshd, python3 for
    # Ansible (python3-apt for its apt module), a time-sync daemon.
    "boot": ["systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "openssh-server",
             "systemd-timesyncd", "ca-certificates", "sudo"],
}
# A boot root plus Debian's Prometheus server and node_exporter (textfile collector), so the
# metrics test scrapes the services the way a fleet's monitoring does.
ROOT_PACKAGES["monitor"] = ROOT_PACKAGES["boot"] + ["prometheus", "prometheus-node-exporter"]
BOOTED_KINDS = ("boot", "monitor")

# Units of a stock Debian image that would fight a shared-network test container
# (sshd on the host's port 22) or grab the apt lock in the middle of a test.
BOOT_MASKED_UNITS = ["ssh.service", "ssh.socket", "apt-daily.timer", "apt-daily-upgrade.timer",
                     "e2scrub_all.timer", "fstrim.timer", "console-getty.service"]

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RootError(RuntimeError):
    """A root could not be bootstrapped, mounted or booted; the message says which step."""


def _run(argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(list(argv), **kw)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive flock under the cache so concurrent builds bootstrap a root once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def root_name(kind: str, arch: str) -> str:
    """Cache key: a changed package list gets a new root instead of a stale one."""
    digest = hashlib.sha256(" ".join(ROOT_PACKAGES[kind] + BOOT_MASKED_UNITS).encode()).hexdigest()[:8]
    return f"{SUITE}-{arch}-{kind}-{digest}"


def cached_root(kind: str, arch: str = "amd64", log=print) -> Path:
    """Path of the bootstrapped `kind` root for `arch`, bootstrapping it on first use."""
    name = root_name(kind, arch)
    path = CACHE / "roots" / name
    if (path / ".fluxforge-root-complete").exists():
        return path
    with _locked(name):
        if (path / ".fluxforge-root-complete").exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        debs = CACHE / "debs" / arch
        debs.mkdir(parents=True, exist_ok=True)
        log(f"buildroot: debootstrap {SUITE} {arch} ({kind}) into {path} (cached for next time)")
        started = time.monotonic()
        argv = ["debootstrap", "--variant=minbase", f"--arch={arch}", f"--cache-dir={debs}",
                "--include=" + ",".join(ROOT_PACKAGES[kind]), SUITE, str(tmp), MIRROR]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-20:])
            raise RootError(f"debootstrap failed (exit {proc.returncode}):\n{tail}")
        _configure_root(tmp, kind)
        (tmp / ".fluxforge-root-complete").write_text(f"{SUITE} {arch} {kind}\n")
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
        log(f"buildroot: {name} ready in {time.monotonic() - started:.0f} s")
    return path


def _configure_root(root: Path, kind: str) -> None:
    """apt sources with security updates; an empty machine-id; quiet units for booting."""
    mirror = MIRROR.rstrip("/")
    security = os.environ.get("FLUXFORGE_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror} {SUITE} main\n"
        f"deb {mirror} {SUITE}-updates main\n"
        f"deb {security} {SUITE}-security main\n")
    # Empty machine-id: every container boots with its own transient id.
    (root / "etc/machine-id").write_text("")
    if kind in BOOTED_KINDS:
        for unit in BOOT_MASKED_UNITS:
            link = root / "etc/systemd/system" / unit
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to("/dev/null")
    # No recommends, no docs for man-db triggers: faster apt inside tests.
    (root / "etc/apt/apt.conf.d/90fluxforge-test").write_text(
        'APT::Install-Recommends "false";\nDPkg::Use-Pty "false";\n')


class Overlay:
    """A writable overlayfs view of a cached root; `close()` unmounts and deletes the changes."""

    def __init__(self, lower: Path, label: str):
        work_root = CACHE / "run"
        work_root.mkdir(parents=True, exist_ok=True)
        self.base = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=work_root))
        self.upper = self.base / "upper"
        self.merged = self.base / "merged"
        for d in (self.upper, self.base / "work", self.merged):
            d.mkdir()
        opts = f"lowerdir={lower},upperdir={self.upper},workdir={self.base / 'work'}"
        try:
            _run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.merged)],
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except subprocess.CalledProcessError as e:
            shutil.rmtree(self.base, ignore_errors=True)
            raise RootError(f"cannot mount overlay on {lower}: {e.stdout.strip()}") from None
        self._mounted = True

    def close(self) -> None:
        if self._mounted:
            if subprocess.run(["umount", str(self.merged)], stderr=subprocess.DEVNULL).returncode != 0:
                subprocess.run(["umount", "--lazy", str(self.merged)], stderr=subprocess.DEVNULL)
            self._mounted = False
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "Overlay":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def machine_name(prefix: str) -> str:
    """A machine/host name without '-' (host_id allows letters, digits, '_' and '.')."""
    return f"{prefix}{os.getpid() % 100000:05d}{os.urandom(2).hex()}"


def nspawn_run(root: Path, argv: Sequence[str], *, binds: Sequence[tuple[Path, str]] = (),
               ro_binds: Sequence[tuple[Path, str]] = (), env: dict[str, str] | None = None,
               chdir: str = "/", **kw) -> subprocess.CompletedProcess:
    """Run one command in `root` (no boot) with the host's network and resolv.conf."""
    cmd = ["systemd-nspawn", "--quiet", "-D", str(root), "--register=no", "--keep-unit",
           f"--machine={machine_name('ffrun')}", "--resolv-conf=copy-host", f"--chdir={chdir}",
           f"--setenv=PATH={CONTAINER_PATH}", "--setenv=LANG=C.UTF-8"]
    for src, dst in binds:
        cmd.append(f"--bind={src}:{dst}")
    for src, dst in ro_binds:
        cmd.append(f"--bind-ro={src}:{dst}")
    for k, v in (env or {}).items():
        cmd.append(f"--setenv={k}={v}")
    return _run(cmd + ["--", *argv], **kw)


class BootedContainer:
    """A bookworm root booted with systemd as PID 1 (`systemd-nspawn --boot`), driven by nsenter.

    The host network is shared, so 127.0.0.1 inside reaches servers the test runs on
    the host.  `stop()` powers it off through nspawn (SIGTERM to our nspawn pid),
    escalating to SIGKILL of that pid only if it does not halt in time.
    """

    def __init__(self, root: Path, prefix: str = "ffboot", log_dir: Path | None = None):
        self.name = machine_name(prefix)
        self.overlay = Overlay(root, self.name)
        self.root = self.overlay.merged
        self.log_path = (log_dir or self.overlay.base) / f"{self.name}.console.log"
        self.proc: subprocess.Popen | None = None
        self.init_pid: int | None = None

    def start(self, timeout: float = 120.0) -> "BootedContainer":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-D", str(self.root), "--boot", "--register=no", "--keep-unit",
             f"--machine={self.name}", "--resolv-conf=copy-host", "--console=read-only"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while self.init_pid is None:
            self._check_alive()
            self.init_pid = self._find_init()
            if time.monotonic() > deadline:
                raise RootError(f"container {self.name}: no init process after {timeout:.0f} s")
            time.sleep(0.2)
        while True:
            self._check_alive()
            state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
            if state in ("running", "degraded"):
                return self
            if time.monotonic() > deadline:
                raise RootError(f"container {self.name}: system state {state!r} after {timeout:.0f} s")
            time.sleep(0.5)

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RootError(f"container {self.name}: systemd-nspawn exited {self.proc.returncode}:\n{tail}")

    def _find_init(self) -> int | None:
        """nspawn's child in the container's pid namespace is systemd (PID 1 inside)."""
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        for pid in children:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            except OSError:
                continue
        return None

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 600.0,
            input: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run argv inside the container (all its namespaces) with a clean environment."""
        if self.init_pid is None:
            raise RootError(f"container {self.name} is not running")
        environ = {"PATH": CONTAINER_PATH, "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0",
                   "DEBIAN_FRONTEND": "noninteractive", "TERM": "dumb", "HOME": "/root"}
        environ.update(env or {})
        cmd = ["nsenter", "-t", str(self.init_pid), "-a", "--", "env", "-i",
               *[f"{k}={v}" for k, v in environ.items()], *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise RootError(f"in {self.name}: {' '.join(argv)} exited {proc.returncode}\n"
                            f"stdout: {proc.stdout[-4000:]}\nstderr: {proc.stderr[-4000:]}")
        return proc

    def stop(self, timeout: float = 60.0) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(30)
        finally:
            self.init_pid = None
            self.overlay.close()

    def __enter__(self) -> "BootedContainer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
