"""Event-to-publish latency of live rows: exchange time of an hf row -> the moment it was published.

Why a window of recent samples and not a histogram since start: the operator (STATUS=,
`fluxforge status`) wants how late rows are *now*, after a knob change or a backlog.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def latency_target(flush_interval: float, reorder_window: float) -> float:
    """The latency live rows should stay within (docs/live.md): a row waits up to a collector flush
    to be read and a reorder window to be final, plus half a second to be computed and published."""
    return flush_interval + reorder_window + 0.5


class LatencyWindow:
    """The last `size` latencies in seconds; p50/p99 over them."""

    def __init__(self, size: int = 20_000):
        self._buf = np.zeros(size, dtype=np.float64)
        self._n = 0  # samples ever added

    def add_rows(self, table: pa.Table, now_s: float) -> None:
        """One sample per row: now - its exchange `timestamp`."""
        if table.num_rows == 0:
            return
        ms = pc.cast(table.column("timestamp"), pa.int64()).to_numpy(zero_copy_only=False)
        self.add(now_s - ms.astype(np.float64) / 1000.0)

    def add(self, seconds: np.ndarray) -> None:
        size = len(self._buf)
        seconds = np.asarray(seconds, dtype=np.float64)[-size:]
        pos = (self._n + np.arange(len(seconds))) % size
        self._buf[pos] = seconds
        self._n += len(seconds)

    @property
    def count(self) -> int:
        return self._n

    def quantiles(self) -> tuple[float, float] | None:
        """(p50, p99) in seconds, None before the first sample."""
        if self._n == 0:
            return None
        p50, p99 = np.quantile(self._samples(), [0.5, 0.99])
        return float(p50), float(p99)

    def share_above(self, seconds: float) -> float | None:
        """The fraction of the window's samples later than `seconds` (bench/live.py: how many rows
        miss a latency target, which a p99 alone does not say)."""
        if self._n == 0:
            return None
        return float(np.mean(self._samples() > seconds))

    def _samples(self) -> np.ndarray:
        """The samples in the window (fewer than its size until it has filled)."""
        return self._buf[:min(self._n, len(self._buf))]

    def summary(self) -> str:
        q = self.quantiles()
        return "no live rows yet" if q is None else f"event-to-publish p50 {q[0]:.2f}s p99 {q[1]:.2f}s"
