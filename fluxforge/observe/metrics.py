"""The services' Prometheus registry and /metrics endpoint, plus what both services expose.

Why a registry per service (not prometheus_client's global one): the collector
and the ETL each serve their own port, tests build several in one process, and
nothing imported by accident (a library's metrics) leaks into the exposition.

The endpoint is prometheus_client's WSGI app on a daemon thread, its connections
bounded (observe/metrics_http.py), bound to `metrics.listen` (loopback by default).
A port that cannot be bound (in use, address not yet configured) is logged and
retried in the background: metrics are never a reason for a service to fail
(DESIGN decision 10).

Values that already exist in the services (queue fill, last-message times,
segment directories, disk usage) are read at scrape time by custom collectors,
so observing them costs the hot path nothing.
"""
from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector

from ..config import Config
from ..logs import get_logger
from . import metric_defs as M
from . import metrics_http

log = get_logger("fluxforge.metrics")
RETRY_SECONDS = 30.0


def new_registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=reg)  # process_cpu_seconds_total, resident memory, open fds
    return reg


def family(d: M.MetricDef, labels: Iterable[str] | None = None) -> Metric:
    """An empty metric family for a scrape-time collector, typed and labelled from its definition."""
    labels = list(d.labels if labels is None else labels)
    if d.kind == M.COUNTER:
        return CounterMetricFamily(d.name, d.help, labels=labels)
    if d.kind == M.GAUGE:
        return GaugeMetricFamily(d.name, d.help, labels=labels)
    raise ValueError(f"{d.name}: {d.kind} families are built with prometheus_client objects")


def counter(d: M.MetricDef, registry: CollectorRegistry) -> Counter:
    return Counter(d.name, d.help, list(d.labels), registry=registry)


def histogram(d: M.MetricDef, registry: CollectorRegistry, buckets: tuple[float, ...]) -> Histogram:
    return Histogram(d.name, d.help, list(d.labels), registry=registry, buckets=buckets)


def kernels_fingerprint() -> str:
    """sha256 prefix of the compiled feature kernels (tells apart builds with the same version)."""
    pkg = Path(__file__).resolve().parents[1] / "_kernels"
    h = hashlib.sha256()
    files = sorted(p for p in pkg.glob("*") if p.suffix in (".so", ".pyd"))
    for p in files:
        h.update(p.read_bytes())
    return h.hexdigest()[:12] if files else "none"


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("fluxforge")
    except PackageNotFoundError:
        return "unknown"


class CommonCollector(PromCollector):
    """Build info, watchdog health and data_dir disk usage: what every service exposes."""

    def __init__(self, cfg: Config, service: str, health: Callable[[], str | None]):
        self.data_dir = cfg.data_dir
        self.service = service
        self.health = health
        self.build = {"version": version(), "kernels": kernels_fingerprint()}

    def collect(self):
        info = family(M.BUILD_INFO)
        info.add_metric([self.build["version"], self.build["kernels"]], 1.0)
        yield info
        healthy = family(M.WATCHDOG_HEALTHY)
        try:
            ok = self.health() is None
        except Exception:  # a check that breaks is not healthy, and must not break the scrape
            ok = False
        healthy.add_metric([self.service], 1.0 if ok else 0.0)
        yield healthy
        try:
            usage = shutil.disk_usage(self.data_dir)
        except OSError:
            return
        for d, value in ((M.DISK_USED, usage.used), (M.DISK_FREE, usage.free), (M.DISK_SIZE, usage.total)):
            g = family(d)
            g.add_metric([], float(value))
            yield g


class MetricsEndpoint:
    """/metrics of one service on `metrics.listen`:`port`; `serve()` binds (retrying) until stopped."""

    def __init__(self, registry: CollectorRegistry, address: str, port: int, service: str):
        self.registry = registry
        self.address = address
        self.port = port
        self.service = service
        self._server = None
        self._thread = None

    @classmethod
    def for_service(cls, cfg: Config, registry: CollectorRegistry, service: str) -> "MetricsEndpoint":
        port = cfg.metrics.collector_port if service == "collector" else cfg.metrics.etl_port
        return cls(registry, cfg.metrics.listen, port, service)

    @property
    def bound_port(self) -> int | None:
        return self._server.server_port if self._server is not None else None

    def try_start(self) -> bool:
        try:
            self._server, self._thread = metrics_http.start(self.address, self.port, self.registry)
        except OSError as e:
            log.warning("metrics_listen_failed", service=self.service, address=self.address, port=self.port,
                        error=e.strerror or str(e), retry_seconds=RETRY_SECONDS)
            return False
        log.info("metrics_listening", service=self.service, address=self.address, port=self.bound_port)
        return True

    async def serve(self) -> None:
        """Run as a task: bind, retrying every RETRY_SECONDS; cancelling it stops the server."""
        try:
            while not self.try_start():
                await asyncio.sleep(RETRY_SECONDS)
            await asyncio.Event().wait()
        finally:
            self.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
