"""Turn the timers' reports (compaction, sync, retention) into textfile metrics.

Why apart from the commands: `fluxforge compact` and `fluxforge sync` stay thin
fronts (one `with job_metrics(...)` and one `record_*` call each), and what a
report means as metrics -- which counts, which S3 error kinds -- is decided
here, next to the metric definitions.
"""
from __future__ import annotations

import re
from typing import Any

from . import metric_defs as M
from .textfile import JobRun

S3_ERROR_KINDS = ("checksum", "auth", "connection", "throttled", "other")
_KIND_PATTERNS = (
    ("checksum", re.compile(r"checksum|mismatch|BadDigest", re.I)),
    ("auth", re.compile(r"AccessDenied|Forbidden|InvalidAccessKeyId|SignatureDoesNotMatch|credential|403", re.I)),
    ("throttled", re.compile(r"SlowDown|Throttl|TooManyRequests|503", re.I)),
    ("connection", re.compile(r"connect|timed? ?out|Endpoint|unreachable|reset by peer|Network", re.I)),
)


def s3_error_kind(message: str) -> str:
    """A bounded label for an S3 failure message (checksum, auth, connection, throttled, other)."""
    for kind, pattern in _KIND_PATTERNS:
        if pattern.search(message):
            return kind
    return "other"


def record_compaction(run: JobRun, report: Any) -> None:
    run.set(M.COMPACT_FILES, report.files_in)
    run.set(M.COMPACT_BYTES, report.bytes_out)
    run.set(M.COMPACT_UNREADABLE, len(report.unreadable))  # apart from the outcome: one damaged file vs a
    run.set(M.COMPACT_FAILED, len(report.failed))          # compaction that could not run at all


def record_retention(run: JobRun, files: int, bytes_: int) -> None:
    run.set(M.RETENTION_DELETED_FILES, files)
    run.set(M.RETENTION_DELETED_BYTES, bytes_)


def record_sync(run: JobRun, cfg: Any, report: Any | None, errors: list[str]) -> None:
    """Uploads of this run (report None: the run failed before uploading), S3 errors, backlog from sync.sqlite."""
    from .sync_status import sync_status

    if report is not None:
        run.set(M.SYNC_UPLOADED_FILES, report.uploaded)
        run.set(M.SYNC_UPLOADED_BYTES, report.bytes)
        run.set(M.SYNC_FAILED_FILES, len(report.failed))
        run.set(M.SYNC_DAMAGED_FILES, len(report.damaged))  # not S3's errors: not among the kinds
        errors = errors + [why for _logical, why in report.failed]
    kinds = dict.fromkeys(S3_ERROR_KINDS, 0)
    for message in errors:
        kinds[s3_error_kind(message)] += 1
    for kind, n in kinds.items():
        run.set(M.SYNC_S3_ERRORS, n, kind)
    try:
        st = sync_status(cfg)
    except OSError:
        return
    if "backlog_files" in st:
        run.set(M.SYNC_BACKLOG_FILES, st["backlog_files"])
        run.set(M.SYNC_BACKLOG_BYTES, st["backlog_bytes"])
    if st.get("last_upload"):
        from datetime import datetime

        run.set(M.SYNC_LAST_VERIFIED, datetime.fromisoformat(st["last_upload"]).timestamp())
