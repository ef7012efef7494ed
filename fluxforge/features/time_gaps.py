"""Resets from holes in exchange time (`etl.max_gap_seconds`, docs/features.md "Resets").

Why: a `gap`/`resync`/`reconnect` event marks a break the collector saw, but a replay over
non-contiguous segments (a day missing, a collector that was down) has holes nobody
announced.  A return or an OFI across such a hole compares two books hours apart.  So a row
more than `max_gap_ms` after the previous row of its stream is a reset at its own time,
exactly as an event reset at that time would be.  The book engine keeps a `GapClock` over
its book rows, the trade products one over their (valid) trades; the clock's last time is
part of their checkpoints, so a hole across a segment boundary or a restart is found the
same as inside one chunk (N chunks == 1 chunk).
"""
from __future__ import annotations

import numpy as np

from .._kernels.row_arrays import time_max


class GapClock:
    """The newest time of one stream so far, and the rows that come more than `max_gap_ms` after it.

    `max_gap_ms=None` finds no gap (the time is still tracked, so the state has one shape)."""

    def __init__(self, max_gap_ms: int | None, last: int | None = None):
        if max_gap_ms is not None and max_gap_ms <= 0:
            raise ValueError("max_gap_ms must be positive (or None: no time-gap resets)")
        self.max_gap_ms = max_gap_ms
        self.last = last

    def resets(self, ts: np.ndarray) -> list[int]:
        """Times of the rows (in stream order) that follow the newest earlier row by more than
        `max_gap_ms`; a late row never moves the clock back, so it makes no gap after itself."""
        ts = np.asarray(ts, dtype=np.int64)
        if len(ts) == 0:
            return []
        start = int(ts[0]) if self.last is None else self.last
        newest = time_max(ts)
        if self.max_gap_ms is None or newest - start <= self.max_gap_ms:
            # no row is further than that from any earlier one (the live path's few rows a flush):
            # no gap, and the clock moves to the newest row as the accumulation below would
            self.last = max(start, newest)
            return []
        newest = np.maximum.accumulate(np.concatenate([np.asarray([start], dtype=np.int64), ts]))
        self.last = int(newest[-1])
        if self.max_gap_ms is None:
            return []
        return ts[ts - newest[:-1] > self.max_gap_ms].tolist()
