"""The ETL service's Prometheus metrics, counted once per processed segment.

Why per segment: a segment is the ETL's unit of work (seconds of Arrow and
kernel time), so counting its outcome, rows and duration when it is done costs
nothing measurable.  `segment_done()` runs on the event loop after the worker
thread returned, so reading the engines' late-drop counters there never races
the kernels.  Segment directories, the oldest waiting segment and the ETL lag
are read from disk at scrape time, like `fluxforge status` does.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector as PromCollector

from ..bronze.finish import read_manifest
from ..bronze.segments import STATES, SegmentStore, closed_time
from . import metric_defs as M
from .metrics import CommonCollector, counter, family, histogram, new_registry

_TS_CHANNELS = ("orderbook", "trades", "ticker")


class EtlMetrics(PromCollector):
    def __init__(self, cfg: Any, engines: Callable[[], Any], health, registry: CollectorRegistry | None = None):
        self.store = SegmentStore(cfg.segments_dir)
        # the ETL's current EngineBank, asked for at each segment: the service makes a new runner when
        # it starts, and a live handover gives the runner the live path's bank
        self.engines = engines
        self.registry = registry or new_registry()
        self.segments = counter(M.ETL_SEGMENTS, self.registry)
        self.feature_rows = counter(M.FEATURE_ROWS, self.registry)
        self.input_rows = counter(M.ETL_INPUT_ROWS, self.registry)
        self.tickers_flagged = counter(M.TICKER_ROWS_FLAGGED, self.registry)
        self.duration = histogram(M.SEGMENT_DURATION, self.registry, M.SEGMENT_BUCKETS)
        for outcome in ("done", "failed"):
            self.segments.labels(outcome)
        for tree in ("hf", "bars"):
            self.feature_rows.labels(tree)
        self.newest_durable_ms: int | None = None
        self.late_dropped: dict[tuple[str, str], int] = {}
        self.registry.register(self)
        self.registry.register(CommonCollector(cfg, "etl", health))

    def segment_done(self, outcome: Any) -> None:
        """Count one `runner.Outcome` (state done|failed, result or None for a recovered segment)."""
        self.segments.labels(outcome.state).inc()
        result = outcome.result
        if result is None:
            return
        self.duration.observe(result.seconds)
        self.feature_rows.labels("hf").inc(result.hf_rows)
        self.feature_rows.labels("bars").inc(result.bar_rows)
        self.input_rows.labels("orderbook").inc(result.books)
        self.input_rows.labels("trades").inc(result.trades)
        for (exchange, symbol), counts in sorted(result.tickers_by_symbol.items()):
            for kind, n in counts.items():
                self.tickers_flagged.labels(exchange, symbol, kind).inc(n)
        self._newest_from_manifest(outcome.segment)
        self.late_dropped = self.engines().late_dropped()

    def _newest_from_manifest(self, segment: str) -> None:
        try:
            channels = read_manifest(self.store.dir("done") / segment)["channels"]
        except (OSError, ValueError, KeyError):
            return
        stamps = [c.get("max_ts") for ch, c in channels.items() if ch in _TS_CHANNELS]
        stamps = [int(t) for t in stamps if t is not None]
        if stamps:
            self.newest_durable_ms = max(max(stamps), self.newest_durable_ms or 0)

    # -- scrape time (HTTP thread) -------------------------------------------------------
    def collect(self):
        now = time.time()
        segs = family(M.SEGMENTS)
        for state in STATES:
            segs.add_metric([state], float(len(self.store.list(state))))
        yield segs
        oldest = family(M.OLDEST_READY_AGE)
        try:  # unrounded (etl_lag rounds for display): a segment closed a moment ago is not 0 s old
            waiting = self.store.list("processing") + self.store.list("ready")
            oldest.add_metric([], max(0.0, now - min(map(closed_time, waiting))) if waiting else 0.0)
        except OSError:  # a segment moved on while we looked: report it next scrape
            pass
        yield oldest
        lag = family(M.ETL_LAG)
        if self.newest_durable_ms is not None:
            lag.add_metric([], max(0.0, now - self.newest_durable_ms / 1000.0))
        yield lag
        late = family(M.LATE_DROPPED)
        for (exchange, symbol), n in sorted(self.late_dropped.items()):
            late.add_metric([exchange, symbol], float(n))
        yield late
