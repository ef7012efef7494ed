"""Wait for segments to arrive in ready/: inotify where available, polling otherwise.

Why inotify: the collector publishes a segment with one rename into ready/
(IN_MOVED_TO); waking on that event gives sub-second latency without a busy poll
on a Pi.  Where inotify is missing (etl/inotify.py) the watcher simply times out
every `poll_interval` and the caller rescans -- the caller always rescans anyway,
so a lost or coalesced event can only delay, never lose, work.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from .inotify import IN_CREATE, IN_MOVED_TO, Inotify


class ReadyWatcher:
    """`await watcher.wait(timeout)` returns when ready/ may have changed or after timeout."""

    def __init__(self, directory: Path, poll_interval: float, use_inotify: bool = True):
        self.directory = Path(directory)
        self.poll_interval = poll_interval
        self._ino: Inotify | None = None
        self._event: asyncio.Event | None = None
        if use_inotify:
            self._ino = Inotify.open()
            if self._ino is not None and self._ino.add(self.directory, IN_MOVED_TO | IN_CREATE) is None:
                self._ino.close()
                self._ino = None
        self.mode = "inotify" if self._ino is not None else "polling"

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._event = asyncio.Event()
        if self._ino is not None:
            loop.add_reader(self._ino.fd, self._drain)

    def _drain(self) -> None:
        self._ino.drain()
        if self._event is not None:
            self._event.set()

    def wake(self) -> None:
        """Let a waiting `wait()` return now (used on stop)."""
        if self._event is not None:
            self._event.set()

    async def wait(self, timeout: float | None = None) -> bool:
        """True if woken by an event, False on timeout.  Polling mode always times out."""
        assert self._event is not None, "start() first"
        if timeout is None:
            timeout = self.poll_interval if self._ino is None else max(self.poll_interval, 30.0)
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._event.clear()

    def close(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._ino is not None:
            if loop is not None:
                loop.remove_reader(self._ino.fd)
            self._ino.close()
            self._ino = None
