"""Collector health for the systemd watchdog, and the one-line STATUS summary.

Why here and not in service.py: what "healthy" means is collector-specific --
event-loop lag, age of the oldest undurable row, time since the last flush
(DESIGN decision 6), and whether any data flows at all: when no configured
stream has delivered anything for `NO_DATA_STALLS` stall timeouts (the stall
monitor and reconnects have not helped), a restart is the remaining remedy --
while service.py only knows how to ping.  A loop that is
blocked cannot run `healthy()` or the watchdog task at all, so it stops pinging
by construction; the checks here catch a loop that runs but a writer that
does not.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config
    from .recorder import Recorder
    from .row_queue import RowQueue
    from .writer import BronzeWriter

MB = 1024 * 1024
NO_DATA_STALLS = 5   # withhold WATCHDOG=1 after this many stall_timeouts without any data


class CollectorParts(Protocol):
    """What the checks read from a running collector (`app.Collector` is one).

    A structural type rather than an import of `app`, so health depends only on
    the parts it inspects and `app` -> `health` stays a one-way dependency.
    """

    cfg: "Config"
    lag: "LoopLagMonitor"
    queue: "RowQueue"
    writer: "BronzeWriter"
    recorder: "Recorder"


class LoopLagMonitor:
    """Measures how late the event loop wakes a sleeper (seconds)."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.lag = 0.0
        self.max_lag = 0.0
        self.last_tick = time.monotonic()

    async def run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.lag = max(0.0, now - start - self.interval)
            self.max_lag = max(self.max_lag, self.lag)
            self.last_tick = now

    def current_lag(self) -> float:
        """Lag including a tick that is overdue right now."""
        overdue = time.monotonic() - self.last_tick - self.interval
        return max(self.lag, overdue)


def health_problem(collector: CollectorParts) -> str | None:
    """None when healthy, else why the watchdog ping is withheld."""
    c = collector.cfg.collector
    lag = collector.lag.current_lag()
    if lag > c.max_loop_lag:
        return f"event loop lag {lag:.1f}s > {c.max_loop_lag}s"
    age = collector.queue.oldest_age()
    if age > c.max_queue_age:
        return f"oldest queued row {age:.1f}s old > {c.max_queue_age}s"
    since = time.monotonic() - collector.writer.last_flush
    if since > c.max_flush_age:
        return f"last flush {since:.1f}s ago > {c.max_flush_age}s"
    silent = collector.recorder.data_silence()
    if silent > NO_DATA_STALLS * c.stall_timeout:
        return (f"no data from any configured stream for {silent:.0f}s "
                f"(> {NO_DATA_STALLS} x stall_timeout {c.stall_timeout:g}s)")
    return None


class RateMeter:
    """Messages per second over the interval between two `rate()` calls."""

    def __init__(self) -> None:
        self._last_count = 0
        self._last_time = time.monotonic()

    def rate(self, count: int) -> float:
        now = time.monotonic()
        dt = max(now - self._last_time, 1e-6)
        r = (count - self._last_count) / dt
        self._last_count, self._last_time = count, now
        return r


def status_line(collector: CollectorParts, msg_rate: float) -> str:
    """e.g. `binance 3/3 okx 2/2 up | 812 msg/s | queue 3% | seg-pi-...-000004 2.1 MB | drops 0 | gaps 1`
    (then `| unrequested N` once rows arrived for symbols not configured: see `Recorder.unrequested`)."""
    rec, writer, queue = collector.recorder, collector.writer, collector.queue
    within = max(collector.cfg.collector.stall_timeout, 5.0)
    ups = " ".join(
        f"{x.name} {rec.symbols_up(x.name, x.symbols, within)}/{len(x.symbols)}" for x in collector.cfg.exchanges)
    seg = writer.segment
    seg_part = f"{seg.id.name} {seg.size / MB:.1f} MB" if seg is not None else "no segment"
    drops = (queue.dropped_total + writer.disk_dropped_total + writer.conversion_dropped_total
             + writer.write_failed_total + rec.bad_rows)
    gaps = rec.event_counts["gap"]
    prefix = "DISK FULL, dropping | " if writer.disk_full else ""
    unrequested = f" | unrequested {rec.unrequested_rows}" if rec.unrequested_rows else ""
    return (f"{prefix}{ups} up | {msg_rate:.0f} msg/s | queue {queue.fill:.0%} | {seg_part} | "
            f"drops {drops} | gaps {gaps}{unrequested}")
