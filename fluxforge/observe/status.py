"""Gather what `fluxforge status` shows: one plain dict of facts about the appliance.

Why one dict: the same facts feed the terminal view, `--json` for monitoring and
the checks in `status_checks`, so the three can never disagree.  Everything is
read from disk (segment directories, bronze rows, feature files, sync state)
and from systemd when present; nothing here changes any state.
"""
from __future__ import annotations

import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import stream_health
from ..config import Config
from ..bronze.segments import REASON, STATES, SegmentId, SegmentStore, closed_time
from ..etl.checkpoint import CheckpointStore
from ..etl.ticker_products import TICKER_ISSUE_KINDS
from .sync_status import sync_status
from .unit_states import unit_states

NS = 1_000_000_000


def collect(cfg: Config, now: float | None = None, with_units: bool = True) -> dict[str, Any]:
    """All status facts for the appliance configured by `cfg`, as JSON-ready data."""
    now = time.time() if now is None else now
    now_ns = int(now * NS)
    for d in (cfg.data_dir, cfg.segments_dir, cfg.state_dir):
        if d.is_dir():
            os.listdir(d)  # PermissionError now, not silently empty listings below (pathlib hides EACCES)
    store = SegmentStore(cfg.segments_dir)
    scan = stream_health.scan(store, now_ns, cfg.collector.segment_max_seconds)
    configured = [(ex.name, sym) for ex in cfg.exchanges for sym in ex.symbols]
    facts: dict[str, Any] = {
        "time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        "data_dir": str(cfg.data_dir),
        "data_dir_exists": cfg.data_dir.is_dir(),
        "segments": segment_summary(store, now),
        "etl": etl_lag(store, now),
        "etl_counters": etl_counters(cfg),
        "streams": stream_health.stream_report(scan, now_ns, configured),
        "events_last_hour": stream_health.events_total(scan),
        "unreadable": scan.unreadable,
        "features": feature_summary(cfg.features_dir),
        "disk": disk_usage(cfg),
        "sync": sync_status(cfg, now),
        "units": unit_states() if with_units else None,
    }
    return facts


def _dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass  # vanished while we looked (the ETL or retention moved it)
    return total


def segment_summary(store: SegmentStore, now: float) -> dict[str, dict[str, Any]]:
    """Per state: count, bytes, oldest segment and its age (from the start time in its name)."""
    out = {}
    for state in STATES:
        segs = store.list(state)
        oldest = segs[0] if segs else None
        out[state] = {
            "count": len(segs),
            "bytes": sum(_dir_bytes(s) for s in segs),
            "oldest": oldest.name if oldest else None,
            "oldest_age_s": round(now - SegmentId.parse(oldest.name).start_datetime.timestamp(), 1) if oldest else None,
        }
        if state == "failed" and oldest is not None:
            out[state]["oldest_reason"] = _first_line(oldest / REASON)
    return out


def _first_line(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip().splitlines()[0][:200]
    except (OSError, IndexError):
        return None


def etl_lag(store: SegmentStore, now: float) -> dict[str, Any]:
    """How long the oldest finished-but-not-transformed segment (ready/ or processing/) has waited."""
    waiting = store.list("processing") + store.list("ready")
    if not waiting:
        return {"waiting": 0, "lag_s": 0.0, "oldest": None}
    oldest = min(waiting, key=closed_time)
    return {"waiting": len(waiting), "lag_s": round(max(0.0, now - closed_time(oldest)), 1), "oldest": oldest.name}


def etl_counters(cfg: Config) -> dict[str, Any]:
    """Rows the ETL dropped as late or as repeated trades, and ticker rows it dropped or kept without a mid
    (`tickers_<kind>`, etl/ticker_products.py TICKER_ISSUE_KINDS): totals since its checkpoint began."""
    try:
        counters = CheckpointStore(cfg.state_dir).counters()
    except (OSError, ValueError) as e:  # unreadable checkpoint: the ETL itself reports it
        return {"error": str(e)}
    keys = ("late_dropped", "duplicate_trades", "last_late_segment", *(f"tickers_{k}" for k in TICKER_ISSUE_KINDS))
    return {k: counters.get(k, 0) for k in keys}


def feature_summary(features_dir: Path) -> dict[str, Any]:
    """Feature files and bytes per tree (hf and bars always; trade_bars, volume_bars, dollar_bars,
    trades, ticker, ... when the ETL wrote them) and the newest file's date partition."""
    out: dict[str, Any] = {}
    trees = sorted(p.name for p in features_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))) \
        if features_dir.is_dir() else []
    for kind in ["hf", "bars"] + [t for t in trees if t not in ("hf", "bars")]:
        files = bytes_ = 0
        newest, newest_mtime = None, None
        for dirpath, _dirs, names in os.walk(features_dir / kind):  # one stat a file: a year is ~66k of them
            for name in names:
                if name.endswith(".parquet") and not name.startswith("."):
                    try:
                        st = os.stat(os.path.join(dirpath, name))
                    except OSError:
                        continue  # vanished while we looked (compaction, retention)
                    files += 1
                    bytes_ += st.st_size
                    if newest_mtime is None or st.st_mtime > newest_mtime:
                        newest, newest_mtime = os.path.join(dirpath, name), st.st_mtime
        out[kind] = {"files": files, "bytes": bytes_,
                     "newest": str(Path(newest).relative_to(features_dir)) if newest else None}
    return out


def disk_usage(cfg: Config) -> dict[str, Any]:
    """Usage of the filesystem holding data_dir against the retention watermarks."""
    probe = cfg.data_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return {
        "path": str(probe),
        "total_bytes": usage.total,
        "used_bytes": usage.used,
        "free_bytes": usage.free,
        "used_pct": round(100.0 * usage.used / usage.total, 2) if usage.total else 0.0,
        "data_bytes": _dir_bytes(cfg.data_dir) if cfg.data_dir.is_dir() else 0,
        "high_watermark_pct": cfg.retention.disk_high_watermark,
        "low_watermark_pct": cfg.retention.disk_low_watermark,
        "min_free_mb": cfg.collector.min_free_mb,
    }
