"""Wait for segments to arrive in ready/: inotify where available, polling otherwise.

Why inotify: the collector publishes a segment with one rename into ready/
(IN_MOVED_TO); waking on that event gives sub-second latency without a busy poll
on a Pi.  Where inotify is missing (etl/inotify.py) the watcher simply times out
every `poll_interval` and the caller rescans -- the caller always rescans anyway,
so a lost or coalesced event can only delay, never lose, work.
"""
from __future__ import annotations

from pathlib import Path

from .inotify import IN_CREATE, IN_MOVED_TO, Waker, watching


class ReadyWatcher(Waker):
    """`await watcher.wait(timeout)` returns when ready/ may have changed or after timeout."""

    def __init__(self, directory: Path, poll_interval: float, use_inotify: bool = True):
        self.directory = Path(directory)
        self.poll_interval = poll_interval
        super().__init__(watching([(self.directory, IN_MOVED_TO | IN_CREATE)]) if use_inotify else None)

    async def wait(self, timeout: float | None = None) -> bool:
        """True if woken by an event (or `wake()`, used on stop), False on timeout.  Polling mode
        always times out."""
        if timeout is None:
            timeout = self.poll_interval if self._ino is None else max(self.poll_interval, 30.0)
        return await super().wait(timeout)
