"""Wake the live path when it may have work: a journal of the followed segment grew, a segment
began or rotated, or the segment job finished one -- instead of looking every poll interval.

Why: at 10 looks a second the live loop woke the event loop and stat'ed the journals nine
times in ten for nothing, and a row waited half a poll interval on average after its flush.
With inotify (etl/inotify.py) the loop sleeps until the collector writes: a watch on
active/ (segments beginning, rotating away), one on ready/ (a rotated segment finished:
the live path finishes its own copy then) and one on the followed segment's directory
(journal appends, new journals).  The segment job's end is not a file event in these
directories: the service calls `wake()`.  Every wake-up is followed by a full look (the
step reads whatever is there), so a coalesced event loses nothing; as a safety net the
loop also looks every `SAFETY_SECONDS`.  Without inotify it looks every
`etl.live.poll_interval`, as before.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from .inotify import (IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MODIFY, IN_MOVE_SELF, IN_MOVED_FROM, IN_MOVED_TO,
                      Inotify)

SAFETY_SECONDS = 1.0  # with inotify: the longest sleep without a look (an event inotify could not give)
_STORE_EVENTS = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE
_SEGMENT_EVENTS = IN_MODIFY | IN_CREATE | IN_DELETE | IN_MOVE_SELF | IN_DELETE_SELF


class LiveWake:
    """`await wake.wait()` returns True when the live path may have work, False after a timeout."""

    def __init__(self, active: Path, ready: Path, poll_interval: float, use_inotify: bool = True):
        self.poll_interval = poll_interval
        self._event: asyncio.Event | None = None
        self._ino = Inotify.open() if use_inotify else None
        if self._ino is not None and (self._ino.add(active, _STORE_EVENTS) is None
                                      or self._ino.add(ready, _STORE_EVENTS) is None):
            self._ino.close()
            self._ino = None
        self.mode = "inotify" if self._ino is not None else "polling"
        self.followed: Path | None = None
        self._wd: int | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._event = asyncio.Event()
        if self._ino is not None:
            loop.add_reader(self._ino.fd, self._drain)

    def _drain(self) -> None:
        self._ino.drain()
        self.wake()

    def follow(self, seg_dir: Path | None) -> None:
        """Watch the journals of `seg_dir` (the segment the live path follows; None: none).  A new one
        wakes the next `wait()` at once: it may have grown before its watch existed."""
        if seg_dir == self.followed:
            return
        if self._ino is not None:
            if self._wd is not None:
                self._ino.remove(self._wd)
            self._wd = self._ino.add(seg_dir, _SEGMENT_EVENTS) if seg_dir is not None else None
        self.followed = seg_dir
        self.wake()

    def wake(self) -> None:
        """Let the next (or a waiting) `wait()` return now."""
        if self._event is not None:
            self._event.set()

    async def wait(self) -> bool:
        assert self._event is not None, "start() first"
        timeout = self.poll_interval if self._ino is None else max(self.poll_interval, SAFETY_SECONDS)
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
