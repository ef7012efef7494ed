"""Exclusive flock(2) locks in the state directory: one writer per data_dir and job.

Why one module: the long-running services (DESIGN decision 11: `collector`,
`etl`) and the maintenance jobs (`compact`, `sync`, `retention`, which share
`maintenance.lock`) all need the same thing -- a lock the kernel releases
even on SIGKILL, so a crash never leaves a stale lock behind.  A service
takes its lock once and holds it for the process lifetime; a second instance
fails at once (`LockHeld`, mapped to `EXIT_ALREADY_RUNNING`) instead of
"recovering" the live segment or overwriting a newer checkpoint.  The holder
writes its pid into the file so the refusal can say who holds it.
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# Exit status of a second instance; the units list it in RestartPreventExitStatus=
# (restarting cannot help while the first instance runs).
EXIT_ALREADY_RUNNING = 73


class LockHeld(Exception):
    """Another process holds the lock (and `timeout` ran out)."""


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "another process"


@contextmanager
def exclusive_lock(path: Path, timeout: float | None = 0.0, what: str = "") -> Iterator[Path]:
    """Hold flock(LOCK_EX) on `path`; wait at most `timeout` s (None: forever, 0: fail at once).

    Raises `LockHeld` naming the holder's pid and `what` it is.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline is not None else 0))
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:  # type: ignore[operator]
                    raise LockHeld(f"{path} is held by {_holder(fd)}{f' ({what})' if what else ''}") from None
                time.sleep(0.2)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # a full disk: the lock itself holds, only the refusal message lacks the pid
        yield path
    finally:
        os.close(fd)


@contextmanager
def service_lock(state_dir: Path, service: str, command: str) -> Iterator[Path]:
    """`state/<service>.lock` for the whole run of a long-running service; `LockHeld` at once if taken."""
    try:
        with exclusive_lock(Path(state_dir) / f"{service}.lock", timeout=0.0) as path:
            yield path
    except LockHeld as e:
        raise LockHeld(f"`{command}` is already running on this data_dir ({e}); not starting a second one") from None
