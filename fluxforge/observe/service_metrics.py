"""Wire metrics into a running service: one call from the collector and one from the ETL.

Why a separate module: the services only say "install my metrics" and get back
what to run (the endpoint task) and what to feed (the counters), so their own
modules stay free of Prometheus details and `metrics.enabled: false` leaves
them exactly as they were.
"""
from __future__ import annotations

from typing import Any, Callable

from .metrics import MetricsEndpoint

Health = Callable[[], "str | None"]


def install_metrics(collector: Any, health: Health) -> tuple[Any, MetricsEndpoint | None]:
    """CollectorMetrics fed by the collector's writer, and its endpoint; (None, None) when disabled."""
    cfg = collector.cfg
    if not cfg.metrics.enabled:
        return None, None
    from .collector_metrics import CollectorMetrics

    metrics = CollectorMetrics(collector, health)
    collector.writer.metrics = metrics
    return metrics, MetricsEndpoint.for_service(cfg, metrics.registry, "collector")


def install_etl_metrics(service: Any) -> tuple[Any, MetricsEndpoint | None]:
    """EtlMetrics for an EtlService (fed with each segment's Outcome), and its endpoint."""
    cfg = service.cfg
    if not cfg.metrics.enabled:
        return None, None
    from .etl_metrics import EtlMetrics

    metrics = EtlMetrics(cfg, lambda: service.runner.bank, service.healthy)
    if getattr(service, "hub", None) is not None:
        from ..etl.live_latency import latency_target
        from .live_metrics import LiveMetrics

        target = latency_target(cfg.collector.flush_interval, cfg.etl.reorder_window)
        metrics.registry.register(LiveMetrics(service.hub, lambda: getattr(service, "live", None), target))
    return metrics, MetricsEndpoint.for_service(cfg, metrics.registry, "etl")
