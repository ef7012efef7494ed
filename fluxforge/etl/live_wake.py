"""Wake the live path when it may have work: the collector finished a flush, a segment began or
rotated, or the segment job finished one -- instead of looking every poll interval.

Why: at 10 looks a second the live loop woke the event loop and stat'ed the journals nine
times in ten for nothing, a row waited half a poll interval on average after its flush,
and a look that fell between two channels' writes of one flush fed them as two chunks
(twice the per-symbol work; the rows of the first waited for the second).  The collector
touches `active/.flushed` once every channel of a flush is written (SegmentStore.mark_flush);
with inotify (etl/inotify.py) on active/ (that mark, segments beginning and rotating away)
and ready/ (a rotated segment finished: the live path finishes its own copy then) the loop
sleeps until then.  The segment job's end is not a file event there: the service calls
`wake()`.  Every wake-up is followed by a full look, so a coalesced event loses nothing.

Without inotify, or once a safety look (every `SAFETY_SECONDS` without an event) found
rows no event announced (a collector that does not mark its flushes, a file system
inotify cannot see), it looks every `etl.live.poll_interval`, as it always did.
"""
from __future__ import annotations

from pathlib import Path

from ..logs import get_logger
from .inotify import IN_ATTRIB, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_MOVED_FROM, IN_MOVED_TO, Waker, watching

log = get_logger("fluxforge.etl.live")

SAFETY_SECONDS = 3.0  # with inotify: the longest sleep without a look
_ACTIVE_EVENTS = IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE
_READY_EVENTS = IN_CREATE | IN_MOVED_TO


class LiveWake(Waker):
    """`await wake.wait()` returns True when the live path may have work, False after a timeout."""

    def __init__(self, active: Path, ready: Path, poll_interval: float, use_inotify: bool = True):
        self.poll_interval = poll_interval
        super().__init__(watching([(active, _ACTIVE_EVENTS), (ready, _READY_EVENTS)]) if use_inotify else None)
        self.polling = self._ino is None
        self.last_woken = True  # whether the last wait() ended by an event (or wake()), not a timeout

    async def wait(self) -> bool:
        self.last_woken = await super().wait(self.poll_interval if self.polling else SAFETY_SECONDS)
        return self.last_woken

    def found_unannounced(self) -> None:
        """The look after a timeout found new rows: flushes are not reaching us as events."""
        if not self.polling and not self.last_woken:
            self.polling = True
            log.warning("live_flush_marks_missing", fallback=f"looking every {self.poll_interval:g} s",
                        note="new rows without a flush event (a collector that does not mark its flushes, "
                             "or a file system inotify does not see)")
