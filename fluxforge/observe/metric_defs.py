"""Every FluxForge metric: name, type, help and labels, declared once.

Why one table: the services' /metrics endpoints, the timers' textfiles, the
Grafana dashboard, the Prometheus alert rules and the tests all refer to these
names; declaring them here lets a test check that every dashboard and rule
expression names a metric that exists, and keeps the conventions (`fluxforge_`
prefix, base units, `_total` counters, `_seconds`, `_bytes`) in one place.

Labels are bounded: `exchange`, `channel` and `symbol` come from the config,
`state`, `event`, `reason`, `kind`, `tree` and `job` from the fixed sets below (live drop
reasons: fluxforge/live/hub.py DROP_REASONS; ticker kinds: fluxforge/etl/ticker_products.py
TICKER_ISSUE_KINDS; latency quantiles: LIVE_QUANTILES).
"""
from __future__ import annotations

from dataclasses import dataclass

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

# Bounded label values (anything else is folded into "other" by the writers).
STREAM_EVENTS = ("gap", "resync", "reconnect", "stall", "dropped", "disk_full", "crossed_book", "unrequested",
                 "error")
DROP_REASONS = ("queue_full", "disk_full")
JOBS = ("compact", "sync", "retention")
OUTCOMES = ("success", "failure", "skipped")
LIVE_QUANTILES = ("0.5", "0.99")  # of the live latency window (etl/live_latency.py)

FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SEGMENT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass(frozen=True)
class MetricDef:
    name: str          # exposition name without the `_total` / `_info` suffix prometheus_client adds
    kind: str
    help: str
    labels: tuple[str, ...] = ()


def _d(name: str, kind: str, help: str, *labels: str) -> MetricDef:
    return MetricDef(name, kind, help, labels)


# -- both services ------------------------------------------------------------------
BUILD_INFO = _d("fluxforge_build_info", GAUGE, "always 1: FluxForge version and fingerprint of the compiled feature kernels",
                "version", "kernels")
WATCHDOG_HEALTHY = _d("fluxforge_watchdog_healthy", GAUGE,
                      "1 while the service's health checks pass (WATCHDOG=1 is sent), else 0", "service")
DISK_USED = _d("fluxforge_disk_used_bytes", GAUGE, "used bytes of the filesystem holding data_dir")
DISK_FREE = _d("fluxforge_disk_free_bytes", GAUGE, "free bytes (for unprivileged users) of the data_dir filesystem")
DISK_SIZE = _d("fluxforge_disk_size_bytes", GAUGE, "size of the filesystem holding data_dir")

# -- collector -----------------------------------------------------------------------
MESSAGES = _d("fluxforge_messages_received", COUNTER, "market-data rows received from the exchange and queued",
              "exchange", "channel", "symbol")
ROWS_WRITTEN = _d("fluxforge_rows_written", COUNTER, "data rows made durable in bronze journals",
                  "exchange", "channel")
BYTES_WRITTEN = _d("fluxforge_bytes_written", COUNTER, "bytes appended to bronze journals (compressed)")
STREAM_EVENT = _d("fluxforge_stream_events", COUNTER,
                  "stream events recorded as event rows (gap, resync, reconnect, stall, dropped, ...)",
                  "exchange", "event")
ROWS_DROPPED = _d("fluxforge_rows_dropped", COUNTER, "data rows dropped with accounting, by reason", "reason")
QUEUE_FILL = _d("fluxforge_queue_fill_ratio", GAUGE, "rows not yet durable / collector.queue_max")
LAST_MESSAGE_AGE = _d("fluxforge_last_message_age_seconds", GAUGE,
                      "seconds since the last update of a stream (only streams seen since start)",
                      "exchange", "channel", "symbol")
FLUSH_DURATION = _d("fluxforge_flush_duration_seconds", HISTOGRAM, "time to write and fsync one flush")
LOOP_LAG = _d("fluxforge_event_loop_lag_seconds", GAUGE, "how late the collector's asyncio loop wakes a sleeper")
SEGMENT_ROTATIONS = _d("fluxforge_segments_rotated", COUNTER, "active segments closed and handed to finishing")

# -- ETL -----------------------------------------------------------------------------
SEGMENTS = _d("fluxforge_segments", GAUGE, "bronze segments per state directory", "state")
OLDEST_READY_AGE = _d("fluxforge_oldest_ready_segment_age_seconds", GAUGE,
                      "seconds since the oldest segment waiting in ready/ or processing/ was finished (0: none)")
ETL_LAG = _d("fluxforge_etl_lag_seconds", GAUGE,
             "now minus the exchange time of the newest bronze row whose features are durable")
SEGMENT_DURATION = _d("fluxforge_etl_segment_duration_seconds", HISTOGRAM, "time to process one segment")
ETL_SEGMENTS = _d("fluxforge_etl_segments_processed", COUNTER, "segments processed, by outcome", "outcome")
LATE_DROPPED = _d("fluxforge_etl_rows_late_dropped", COUNTER,
                  "rows older than the symbol's watermark dropped by the ETL (since the checkpoint began)",
                  "exchange", "symbol")
TICKER_ROWS_FLAGGED = _d("fluxforge_etl_ticker_rows_flagged", COUNTER,
                        "ticker rows the ETL dropped (late, duplicate, untimed) or kept without a mid price "
                        "(crossed, missing_side), per kind", "exchange", "symbol", "kind")
FEATURE_ROWS = _d("fluxforge_feature_rows_written", COUNTER, "feature rows written, per tree (hf, bars)", "tree")
ETL_INPUT_ROWS = _d("fluxforge_etl_input_rows", COUNTER, "bronze rows fed to the feature kernels", "channel")

# -- live features (the ETL's hub, fluxforge/live/) --------------------------------------
LIVE_SUBSCRIBERS = _d("fluxforge_live_subscribers", GAUGE, "subscribers connected to the live endpoint")
LIVE_DROPPED = _d("fluxforge_live_subscribers_dropped", COUNTER,
                  "live subscribers dropped for not keeping up (slow: buffer full; stalled: send timeout)", "reason")
LIVE_ROWS_PUBLISHED = _d("fluxforge_live_rows_published", COUNTER, "feature rows the ETL published live")
LIVE_REFUSED = _d("fluxforge_live_subscriptions_refused", COUNTER,
                  "subscriptions refused (bad token, too many subscribers)")
LIVE_LATENCY = _d("fluxforge_live_publish_latency_seconds", GAUGE,
                  "event-to-publish latency of the latest live hf rows (exchange time to the hub; the last "
                  "20,000 rows), per quantile (0.5, 0.99); absent before the first row", "quantile")
LIVE_LATENCY_TARGET = _d("fluxforge_live_latency_target_seconds", GAUGE,
                         "the latency live rows should stay within: collector.flush_interval + etl.reorder_window + 0.5 s")
LIVE_ERRORS = _d("fluxforge_live_errors", COUNTER,
                 "errors of the live path (its engines restarted from the checkpoint, the rows fed again as replays)")
LIVE_ROWS_REPLAYED = _d("fluxforge_live_rows_replayed", COUNTER,
                        "rows published again flagged replay=true (after an ETL restart or a live-path error)")
LIVE_ROWS_NOT_LANDED = _d("fluxforge_live_rows_not_landed", COUNTER,
                          "rows published live of segments that then went to failed/ (not in Parquet)")
LIVE_REPLAY_BYTES = _d("fluxforge_live_replay_bytes", GAUGE,
                       "memory of the replay ring's rows and chunk places (estimated; bounded by etl.live.replay_mb)")
LIVE_REPLAY_SECONDS = _d("fluxforge_live_replay_seconds", GAUGE,
                         "exchange time from the oldest to the newest row the replay ring holds (up to "
                         "etl.live.replay_minutes; less once etl.live.replay_mb bounds it)")

# -- timers (node_exporter textfiles) ------------------------------------------------
# The label is `task`, not `job`: Prometheus sets `job` on every target (node_exporter's here).
JOB_LAST_RUN = _d("fluxforge_task_last_run_timestamp_seconds", GAUGE, "when the task last finished (Unix time)", "task")
JOB_LAST_SUCCESS = _d("fluxforge_task_last_success_timestamp_seconds", GAUGE,
                      "when the task last finished successfully (Unix time)", "task")
JOB_DURATION = _d("fluxforge_task_duration_seconds", GAUGE, "duration of the task's last run", "task")
JOB_OUTCOME = _d("fluxforge_task_outcome", GAUGE, "1 for the outcome of the task's last run, else 0", "task", "outcome")
COMPACT_FILES = _d("fluxforge_compact_files_merged", GAUGE, "part files merged by the last compaction")
COMPACT_BYTES = _d("fluxforge_compact_bytes_written", GAUGE, "bytes written by the last compaction")
COMPACT_UNREADABLE = _d("fluxforge_compact_unreadable_files", GAUGE,
                        "feature files the last compaction could not read (kept as they are; docs/operations.md)")
COMPACT_FAILED = _d("fluxforge_compact_failed_merges", GAUGE,
                    "merges the last compaction could not make (their inputs kept)")
SYNC_UPLOADED_FILES = _d("fluxforge_sync_uploaded_files", GAUGE, "files uploaded and verified by the last sync")
SYNC_UPLOADED_BYTES = _d("fluxforge_sync_uploaded_bytes", GAUGE, "bytes uploaded and verified by the last sync")
SYNC_FAILED_FILES = _d("fluxforge_sync_failed_files", GAUGE, "files the last sync failed to upload or verify")
SYNC_DAMAGED_FILES = _d("fluxforge_sync_damaged_files", GAUGE,
                        "bronze files that no longer match their segment's manifest (not uploaded, kept)")
SYNC_BACKLOG_FILES = _d("fluxforge_sync_backlog_files", GAUGE, "files still waiting for a verified upload")
SYNC_BACKLOG_BYTES = _d("fluxforge_sync_backlog_bytes", GAUGE, "bytes still waiting for a verified upload")
SYNC_LAST_VERIFIED = _d("fluxforge_sync_last_verified_upload_timestamp_seconds", GAUGE,
                        "Unix time of the newest verified upload recorded in state/sync.sqlite")
SYNC_S3_ERRORS = _d("fluxforge_sync_s3_errors", GAUGE, "S3 errors of the last sync, by kind", "kind")
RETENTION_DELETED_FILES = _d("fluxforge_retention_deleted_files", GAUGE, "files deleted by the last retention run")
RETENTION_DELETED_BYTES = _d("fluxforge_retention_deleted_bytes", GAUGE, "bytes freed by the last retention run")

ALL: tuple[MetricDef, ...] = tuple(v for v in list(globals().values()) if isinstance(v, MetricDef))


def exposed_names(d: MetricDef) -> set[str]:
    """Series names a family produces in the text format (what a PromQL expression refers to)."""
    if d.kind == COUNTER:
        return {d.name + "_total", d.name + "_created"}
    if d.kind == HISTOGRAM:
        return {d.name + s for s in ("_bucket", "_sum", "_count", "_created")}
    return {d.name}


def all_series_names() -> set[str]:
    return set().union(*(exposed_names(d) for d in ALL))
