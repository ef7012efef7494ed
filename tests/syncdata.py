"""Realistic data trees for compaction/sync/retention tests: done bronze segments and feature parts.

Files are written with pyarrow in the exact layouts of TEAM.md (bronze schemas
from fluxforge.bronze.schemas, hf/bars partitions named by segment id), so these tests
do not depend on the collector and ETL branches.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import structlog

from fluxforge.bronze.schemas import CHANNEL_SCHEMAS, FORMAT_VERSION
from fluxforge.config import parse_config
from fluxforge.bronze.segments import SegmentId, SegmentStore

@pytest.fixture(autouse=True)
def fresh_logging():
    """Import into a test module: an in-process CLI run binds structlog to the current pytest
    capture stream (configure_logging binds sys.stderr once), which is closed after the test."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()  # and leave no binding to this test's capture stream for later tests


HF_COLUMNS = ("mid", "spread_bps", "microprice", "ofi_1s", "imbalance_l5", "rv_30s", "vpin")


def make_config(data_dir: Path, **sections):
    data = {"data_dir": str(data_dir), "host_id": "pi01"}
    data.update(sections)
    return parse_config(data)


def hf_table(start_ms: int, rows: int, seed: int, step_ms: int = 1000) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = pa.array(start_ms + np.arange(rows, dtype=np.int64) * step_ms, pa.timestamp("ms", tz="UTC"))
    cols = {"timestamp": ts}
    for i, name in enumerate(HF_COLUMNS):
        v = rng.normal(100 + i, 1, rows)
        mask = rng.random(rows) < 0.02
        cols[name] = pa.array(v, mask=mask)
    cols["regime"] = pa.array(rng.choice(["tight", "normal", "wide"], rows))
    return pa.table(cols)


def write_part(features_dir: Path, table: str, exchange: str, symbol: str, day: str, seg: SegmentId,
               data: pa.Table, interval: int | None = None) -> Path:
    base = features_dir / table
    if interval is not None:
        base = base / f"interval={interval}s"
    part = base / f"exchange={exchange}" / f"symbol={symbol}" / f"date={day}" / f"part-{seg.name}.parquet"
    part.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, part, compression="zstd")
    return part


def feature_day(features_dir: Path, day: datetime, segments: int, rows_per_segment: int, host: str = "pi01",
                symbols=("BTC-USDT",), seed: int = 0) -> list[Path]:
    """`segments` consecutive segments covering `day`, one hf part (+ one 60 s bars part) per symbol each."""
    out = []
    seg_len = 86400 // segments
    for s in range(segments):
        start = day + timedelta(seconds=s * seg_len)
        seg = SegmentId.new(host, s + 1, start)
        for k, sym in enumerate(symbols):
            t = hf_table(int(start.timestamp() * 1000), rows_per_segment, seed * 1000 + s * 10 + k,
                         step_ms=max(seg_len * 1000 // max(rows_per_segment, 1), 1))
            out.append(write_part(features_dir, "hf", "binance", sym, day.date().isoformat(), seg, t))
            out.append(write_part(features_dir, "bars", "binance", sym, day.date().isoformat(), seg,
                                  t.slice(0, max(rows_per_segment // 60, 1)), interval=60))
    return out


def _bronze_tables(seg: SegmentId, rows: int, seed: int) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    t0 = int(seg.start_datetime.timestamp() * 1000)
    ts = t0 + np.sort(rng.integers(0, 60_000, rows))
    common = {"exchange": ["binance"] * rows, "symbol": ["BTC/USDT"] * rows, "timestamp": ts,
              "recv_ns": ts * 1_000_000 + 5_000_000}
    depth = 20
    px = 50_000 + rng.normal(0, 5, (rows, 1))
    book = dict(common, kind=["snapshot"] * rows, nonce=np.arange(rows) + 1000, prev_nonce=[None] * rows,
                checksum=[None] * rows,
                bid_px=list(px - np.arange(1, depth + 1) * 0.01), bid_sz=list(rng.random((rows, depth))),
                ask_px=list(px + np.arange(1, depth + 1) * 0.01), ask_sz=list(rng.random((rows, depth))))
    trades = dict(common, trade_id=[str(i) for i in range(rows)], price=px[:, 0], amount=rng.random(rows),
                  side=rng.choice(["buy", "sell"], rows))
    ticker = dict(common, **{c: rng.random(rows) for c in ("bid", "bid_size", "ask", "ask_size", "last", "open", "high",
                                                          "low", "base_volume", "quote_volume", "vwap", "percentage")})
    events = {"exchange": ["binance"], "symbol": ["BTC/USDT"], "channel": ["orderbook"], "timestamp": [t0],
              "recv_ns": [t0 * 1_000_000], "event": ["reconnect"], "reason": ["test"], "count": [0]}
    return {ch: pa.Table.from_pydict(d, schema=CHANNEL_SCHEMAS[ch])
            for ch, d in (("orderbook", book), ("trades", trades), ("ticker", ticker), ("events", events))}


def bronze_segment(segments_dir: Path, host: str, seq: int, start: datetime, rows: int = 2000, seed: int = 0) -> Path:
    """A finished segment in done/: four channel Parquet files + manifest.json."""
    store = SegmentStore(segments_dir).ensure()
    seg = SegmentId.new(host, seq, start)
    d = store.path("done", seg)
    d.mkdir()
    channels = {}
    for ch, table in _bronze_tables(seg, rows, seed + seq).items():
        path = d / f"{ch}.parquet"
        pq.write_table(table, path, compression="zstd")
        data = path.read_bytes()
        channels[ch] = {"rows": table.num_rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {"segment": seg.name, "host": host, "seq": seq, "format_version": FORMAT_VERSION,
                "started": start.isoformat(), "closed": (start + timedelta(minutes=1)).isoformat(),
                "channels": channels, "recovered": False, "torn_batches_dropped": 0}
    (d / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return d


def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every visible file below root."""
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in files:
            if not f.startswith("."):
                p = Path(dirpath) / f
                out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def partition_rows(partition: Path) -> pa.Table:
    """All rows of a partition, files in name order, as one table (sorted by timestamp)."""
    files = sorted(p for p in partition.glob("*.parquet"))
    if not files:
        return pa.table({})
    return pa.concat_tables(pq.read_table(p).replace_schema_metadata(None) for p in files).sort_by("timestamp")


def utc_day(days_ago: int) -> datetime:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def fluxforge_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fluxforge", *args]


def run_and_maybe_kill(cmd: list[str], delay: float, started=None) -> bool:
    """Start `cmd`; SIGKILL it (by pid) after `delay` s unless it has finished.  True if it was killed.

    With `started` (a callable), the delay counts from the moment `started()` is
    true -- the work has visibly begun -- so the kill lands mid-work however fast
    or slow the machine is, instead of before start-up or after the end.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if started is not None:
        deadline = time.monotonic() + 120
        while proc.poll() is None and not started() and time.monotonic() < deadline:
            time.sleep(0.002)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return killed
