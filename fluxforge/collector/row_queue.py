"""The bounded queue between the stream watchers and the journal writer.

Why not asyncio.Queue: rows are produced synchronously inside ccxt's message
handler (see `tap.py`), where nothing can be awaited, and they are consumed a
whole flush at a time.  So the queue *is* the set of column buffers not yet
durable: rows being filled plus rows handed to the writer thread.  Its size is
bounded twice, by `queue_max` rows and by `queue_max_mb` of estimated memory
(a depth-50 book row costs ~100 times a trade row: 20,000 of them held ~300 MiB,
above the unit's MemoryMax), and the overflow policy is explicit and counted:

* ``drop``: a row arriving at a full queue is dropped, counted per
  (exchange, channel, symbol), and a `dropped` event row records the count;
* ``block``: the websocket readers stop reading (TCP back-pressure on the
  exchange) until the writer catches up.  Frames the websocket library had
  already read into its own (bounded, ~128 KB) buffer are still handled when
  reading resumes, so up to `BLOCK_SLACK_ROWS` rows / `BLOCK_SLACK_BYTES` beyond
  the bounds are accepted; beyond that they are dropped with the same accounting,
  so memory never grows without bound whatever the policy.

A row's memory is estimated when it is admitted (`row_bytes`): Python list slots
and float objects while buffered, plus the NumPy/Arrow copies made at flush.

Event rows (gaps, reconnects, ...) are tiny and never dropped.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter, deque

from .rows import ChannelBuffer, new_buffers

BLOCK_SLACK_ROWS = 10000
BLOCK_SLACK_BYTES = 16 * 1024 * 1024
ROW_BYTES = 400            # a trade, ticker or book row without levels: ~10 list slots + objects + Arrow
LEVEL_BYTES = 96           # one book level: 2 list slots + 2 float objects, then 2 NumPy + 2 Arrow doubles
UNBOUNDED_BYTES = 1 << 62


def row_bytes(levels: int = 0) -> int:
    """Estimated memory of one queued row with `levels` book levels (both sides together)."""
    return ROW_BYTES + LEVEL_BYTES * levels


class RowQueue:
    def __init__(self, capacity: int, policy: str, max_bytes: int | None = None):
        if policy not in ("block", "drop"):
            raise ValueError(f"unknown overflow policy {policy!r}")
        self.capacity = capacity
        self.max_bytes = max_bytes or UNBOUNDED_BYTES
        self.policy = policy
        self.limit = capacity if policy == "drop" else capacity + BLOCK_SLACK_ROWS
        self.byte_limit = self.max_bytes if policy == "drop" else self.max_bytes + BLOCK_SLACK_BYTES
        self.buffers = new_buffers()
        self.pending = 0          # data rows buffered or being written, not yet durable
        self.pending_bytes = 0    # their estimated memory
        self.accepted = 0         # data rows ever accepted
        self.dropped_total = 0
        self._dropped: Counter[tuple[str, str, str]] = Counter()
        self._first_row_at: float | None = None        # monotonic time of the oldest buffered row
        self._buffer_bytes = 0                          # estimated bytes of the rows being filled
        self._in_flight: deque[tuple[int, int, float]] = deque()  # (rows, bytes, oldest time) at the writer
        self._space = asyncio.Event()
        self._space.set()
        self.reading_resumed_at = 0.0  # monotonic time `block` last let the readers read again

    # -- producer side (synchronous, inside ccxt's handler) -------------------
    def admit(self, exchange: str, channel: str, symbol: str, nbytes: int = ROW_BYTES) -> bool:
        """Reserve room for one data row of ~`nbytes`; False (and counted) when it must be dropped."""
        if self.pending >= self.limit or self.pending_bytes + nbytes > self.byte_limit:
            self._dropped[(exchange, channel, symbol)] += 1
            self.dropped_total += 1
            return False
        self.pending += 1
        self.pending_bytes += nbytes
        self._buffer_bytes += nbytes
        self.accepted += 1
        if self._first_row_at is None:
            self._first_row_at = time.monotonic()
        if self.full:
            self._space.clear()
        return True

    @property
    def full(self) -> bool:
        return self.pending >= self.capacity or self.pending_bytes >= self.max_bytes

    async def wait_for_space(self) -> None:
        """Used by the websocket readers under the `block` policy."""
        if self.policy == "block":
            await self._space.wait()

    @property
    def reading_paused(self) -> bool:
        """The `block` policy has stopped the websocket readers: a connection's silence now is ours,
        not the exchange's (the stall monitor does not count it)."""
        return self.policy == "block" and not self._space.is_set()

    # -- consumer side ---------------------------------------------------------
    def take(self) -> tuple[dict[str, ChannelBuffer], int]:
        """Hand the current buffers to the writer; rows stay counted until `done()`."""
        buffers = self.buffers
        n = sum(b.rows for ch, b in buffers.items() if ch != "events")
        self.buffers = new_buffers()
        if n:
            self._in_flight.append((n, self._buffer_bytes, self._first_row_at or time.monotonic()))
            self._buffer_bytes = 0
        self._first_row_at = None
        if self._dropped:
            ev = buffers["events"]
            now = time.time_ns()
            for (exchange, channel, symbol), count in sorted(self._dropped.items()):
                ev.add(exchange, symbol, channel, "dropped", f"queue full (overflow_policy={self.policy})", count, now)
            self._dropped.clear()
        return buffers, n

    def done(self, n: int) -> None:
        """The writer finished with `n` rows (durable, or dropped with accounting)."""
        if n:
            _rows, nbytes, _t = self._in_flight.popleft()
            self.pending -= n
            self.pending_bytes -= nbytes
        if not self.full and not self._space.is_set():
            if self.policy == "block":
                self.reading_resumed_at = time.monotonic()
            self._space.set()

    def oldest_age(self) -> float:
        """Seconds the oldest not-yet-durable row has waited (watchdog health)."""
        oldest = [self._in_flight[0][2]] if self._in_flight else []
        if self._first_row_at is not None:
            oldest.append(self._first_row_at)
        return time.monotonic() - min(oldest) if oldest else 0.0

    @property
    def fill(self) -> float:
        return max(self.pending / self.capacity, self.pending_bytes / self.max_bytes)
