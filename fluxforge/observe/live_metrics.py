"""Prometheus families of the live features, read at scrape time: the hub's counters, the live
path's latency and counters, the replay ring's memory and span.

Why at scrape time: the hub and the live path count with plain integers on the ETL's loop and
worker thread (a `publish()` must stay a few appends); the scrape thread only reads them, so
the hot path never touches a metrics lock.
"""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client.registry import Collector as PromCollector

from . import metric_defs as M
from .metrics import family


class LiveMetrics(PromCollector):
    """`hub`: the LiveHub; `follower()`: the LiveFollower publishing to it, once the service has
    made one (None before: hub families only); `target_s`: the latency live rows should stay
    within (etl/live_latency.py `latency_target`)."""

    def __init__(self, hub, follower: Callable[[], object | None] = lambda: None, target_s: float | None = None):
        self.hub = hub
        self.follower = follower
        self.target_s = target_s

    def collect(self):
        yield from self._hub()
        live = self.follower()
        if live is not None:
            yield from self._follower(live)

    def _hub(self):
        counters = self.hub.counters
        yield _single(M.LIVE_SUBSCRIBERS, len(self.hub.subscribers))
        dropped = family(M.LIVE_DROPPED)
        for reason, n in sorted(dict(counters["dropped"]).items()):
            dropped.add_metric([reason], float(n))
        yield dropped
        ring = self.hub.ring
        for d, value in ((M.LIVE_ROWS_PUBLISHED, counters["published_rows"]), (M.LIVE_REFUSED, counters["refused"]),
                         (M.LIVE_REPLAY_BYTES, ring.bytes), (M.LIVE_REPLAY_SECONDS, ring.span_ms() / 1000)):
            yield _single(d, value)

    def _follower(self, live):
        latency = family(M.LIVE_LATENCY)
        q = live.latency.quantiles()
        if q is not None:
            for label, value in zip(M.LIVE_QUANTILES, q):
                latency.add_metric([label], value)
        yield latency
        if self.target_s is not None:
            yield _single(M.LIVE_LATENCY_TARGET, self.target_s)
        c = live.counters
        for d, value in ((M.LIVE_ERRORS, c.errors), (M.LIVE_ROWS_REPLAYED, c.replayed_rows),
                         (M.LIVE_ROWS_NOT_LANDED, c.not_landed)):
            yield _single(d, value)


def _single(d: M.MetricDef, value: float):
    """A family of one unlabelled sample."""
    f = family(d)
    f.add_metric([], float(value))
    return f
