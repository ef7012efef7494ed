"""Prometheus families of the live-features hub, read from its counters at scrape time.

Why at scrape time: the hub counts with plain integers on the ETL's loop (a
`publish()` must stay a few appends); the scrape thread only reads them, so the
hot path never touches a metrics lock.
"""
from __future__ import annotations

from prometheus_client.registry import Collector as PromCollector

from . import metric_defs as M
from .metrics import family


class LiveMetrics(PromCollector):
    def __init__(self, hub):
        self.hub = hub

    def collect(self):
        counters = self.hub.counters
        subs = family(M.LIVE_SUBSCRIBERS)
        subs.add_metric([], float(len(self.hub.subscribers)))
        yield subs
        dropped = family(M.LIVE_DROPPED)
        for reason, n in sorted(dict(counters["dropped"]).items()):
            dropped.add_metric([reason], float(n))
        yield dropped
        for d, key in ((M.LIVE_ROWS_PUBLISHED, "published_rows"), (M.LIVE_REFUSED, "refused")):
            f = family(d)
            f.add_metric([], float(counters[key]))
            yield f
