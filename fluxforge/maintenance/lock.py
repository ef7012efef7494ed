"""One exclusive lock shared by `compact`, `sync` and `retention`.

Why: the three jobs rename, upload and delete the same files.  Compaction must
not remove parts that sync is uploading, and retention must not delete a
segment while sync is reading it.  Their timers may fire together, so each job
holds `<state_dir>/maintenance.lock` (flock, see `fluxforge.locks`) for its
whole run; a second job waits its turn.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..locks import LockHeld, exclusive_lock

LOCK_NAME = "maintenance.lock"
LockTimeout = LockHeld


@contextmanager
def maintenance_lock(state_dir: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the maintenance lock; wait at most `timeout` seconds (None: forever)."""
    with exclusive_lock(state_dir / LOCK_NAME, timeout, "a compact/sync/retention run"):
        yield
