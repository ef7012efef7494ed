"""The collector's Prometheus metrics, counted a flush at a time.

Why per flush: the collector's hot path (one row per websocket message, inside
ccxt's handler) must not pay for metrics.  The writer already hands every
flush's column buffers to its I/O thread once per `flush_interval`; `flushed()`
counts them there, with one `Counter` over each channel's exchange/symbol
columns, and counts event rows (gap, resync, reconnect, stall, dropped, ...)
from the events buffer once they are durable.  Everything else -- queue fill,
last message age, loop lag, drops, rotations -- already exists on the running
collector and is read at scrape time by `collect()`.

Only structural access to the collector (`CollectorParts`-like attributes), so
`observe` does not import `collector` and the dependency stays one-way.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector as PromCollector

from . import metric_defs as M
from .metrics import CommonCollector, counter, family, histogram, new_registry

_EVENTS = frozenset(M.STREAM_EVENTS)


class CollectorMetrics(PromCollector):
    """Registry of one collector: counters fed by `flushed()`, gauges read from `parts` per scrape."""

    def __init__(self, parts: Any, health, registry: CollectorRegistry | None = None):
        self.parts = parts
        self.registry = registry or new_registry()
        self.messages = counter(M.MESSAGES, self.registry)
        self.rows_written = counter(M.ROWS_WRITTEN, self.registry)
        self.bytes_written = counter(M.BYTES_WRITTEN, self.registry)
        self.events = counter(M.STREAM_EVENT, self.registry)
        self.flush_seconds = histogram(M.FLUSH_DURATION, self.registry, M.FLUSH_BUCKETS)
        self._segment_bytes: tuple[Any, int] = (None, 0)   # (segment id, journal bytes already counted)
        self.registry.register(self)
        self.registry.register(CommonCollector(parts.cfg, "collector", health))

    # -- fed by the writer, once per flush (event loop) -----------------------------
    def flushed(self, buffers: dict, unwritten: dict, seconds: float) -> None:
        """Count one flush: rows taken from the queue, rows and bytes made durable, event rows."""
        self.flush_seconds.observe(seconds)
        for channel, buf in buffers.items():
            if not buf.rows:
                continue
            cols = buf.cols
            if channel == "events":
                if channel not in unwritten:
                    for (exchange, event), n in Counter(zip(cols["exchange"], cols["event"])).items():
                        self.events.labels(exchange, event if event in _EVENTS else "other").inc(n)
                continue
            for (exchange, symbol), n in Counter(zip(cols["exchange"], cols["symbol"])).items():
                self.messages.labels(exchange, channel, symbol).inc(n)
            if channel not in unwritten:
                for exchange, n in Counter(cols["exchange"]).items():
                    self.rows_written.labels(exchange, channel).inc(n)
        self._count_bytes()

    def _count_bytes(self) -> None:
        seg = self.parts.writer.segment
        if seg is None:
            return
        seen_id, seen = self._segment_bytes
        size = seg.size
        if seg.id != seen_id:
            seen = 0
        if size > seen:
            self.bytes_written.inc(size - seen)
        self._segment_bytes = (seg.id, size)

    # -- read at scrape time (HTTP thread): plain reads of numbers and a dict copy -----
    def collect(self):
        p = self.parts
        fill = family(M.QUEUE_FILL)
        fill.add_metric([], p.queue.fill)
        yield fill
        dropped = family(M.ROWS_DROPPED)
        dropped.add_metric(["queue_full"], float(p.queue.dropped_total))
        dropped.add_metric(["disk_full"], float(p.writer.disk_dropped_total))
        yield dropped
        rotations = family(M.SEGMENT_ROTATIONS)
        rotations.add_metric([], float(p.writer.rotations))
        yield rotations
        lag = family(M.LOOP_LAG)
        lag.add_metric([], p.lag.current_lag())
        yield lag
        age = family(M.LAST_MESSAGE_AGE)
        now_ns = time.monotonic_ns()  # as last_seen: a wall-clock step neither ages nor freshens a stream
        for (exchange, channel, symbol), seen_ns in sorted(p.recorder.last_seen.copy().items()):
            age.add_metric([exchange, channel, symbol], max(0.0, (now_ns - seen_ns) / 1e9))
        yield age
