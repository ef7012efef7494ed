"""Staggered order book snapshots: at most N in flight, starts spaced apart.

Why: a restart (or a reconnect) with 50 symbols makes ccxt fetch 50 REST depth
snapshots at once, which trips exchange rate limits and gets the IP banned
exactly when the collector is trying to recover.  Every snapshot fetch goes
through `slot()`: `max_concurrent_snapshots` at a time, and consecutive starts
at least `snapshot_spacing` seconds apart.
"""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator


class SnapshotGate:
    def __init__(self, max_concurrent: int, spacing: float):
        self.max_concurrent = max_concurrent
        self.spacing = spacing
        self._sem: asyncio.Semaphore | None = None
        self._lock: asyncio.Lock | None = None
        self._last_start = float("-inf")
        self.in_flight = 0
        self.max_in_flight = 0     # high-water mark, for tests and status
        self.started = 0
        self.start_times: list[float] = []  # monotonic start times of the last fetches (bounded)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._sem is None:  # created lazily inside the running loop
            self._sem = asyncio.Semaphore(self.max_concurrent)
            self._lock = asyncio.Lock()
        assert self._lock is not None
        async with self._sem:
            async with self._lock:
                wait = self._last_start + self.spacing - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._last_start = time.monotonic()
            self.in_flight += 1
            self.started += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.start_times = (self.start_times + [self._last_start])[-256:]
            try:
                yield
            finally:
                self.in_flight -= 1
