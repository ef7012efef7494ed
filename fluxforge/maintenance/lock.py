"""One exclusive lock shared by `compact`, `sync` and `retention`.

Why: the three jobs rename, upload and delete the same files.  Compaction must
not remove parts that sync is uploading, and retention must not delete a
segment while sync is reading it.  Their timers may fire together, so each job
holds `<state_dir>/maintenance.lock` (flock, released by the kernel even on
SIGKILL) for its whole run; a second job waits its turn.
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_NAME = "maintenance.lock"


class LockTimeout(Exception):
    pass


@contextmanager
def maintenance_lock(state_dir: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the maintenance lock; wait at most `timeout` seconds (None: forever)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline is not None else 0))
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:  # type: ignore[operator]
                    raise LockTimeout(f"{state_dir / LOCK_NAME} is held by another compact/sync/retention run") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)
