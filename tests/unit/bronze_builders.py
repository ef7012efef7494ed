"""Builders of small, real bronze segments for the status / inspect / report tests.

Why here and not fixtures: the tests prepare whole data directories (segments in
several states, journals, events rows, feature bars) and need precise control
of times; plain functions keep each test's situation readable.
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fluxforge.bronze import CHANNEL_SCHEMAS, FORMAT_VERSION
from fluxforge.segments import SegmentId, SegmentStore

NS = 1_000_000_000


def book_rows(exchange: str, symbol: str, recv_ns: list[int], mid: float = 100.0) -> dict[str, list]:
    n = len(recv_ns)
    return {
        "exchange": [exchange] * n, "symbol": [symbol] * n,
        "timestamp": [r // 1_000_000 for r in recv_ns], "recv_ns": recv_ns,
        "nonce": list(range(1, n + 1)),
        "bid_px": [[mid - 0.5, mid - 1.0]] * n, "bid_sz": [[1.0, 2.0]] * n,
        "ask_px": [[mid + 0.5, mid + 1.0]] * n, "ask_sz": [[1.5, 2.5]] * n,
    }


def trade_rows(exchange: str, symbol: str, recv_ns: list[int], price: float = 100.0) -> dict[str, list]:
    n = len(recv_ns)
    return {
        "exchange": [exchange] * n, "symbol": [symbol] * n,
        "timestamp": [r // 1_000_000 for r in recv_ns], "recv_ns": recv_ns,
        "trade_id": [str(i) for i in range(n)], "price": [price] * n, "amount": [0.1] * n,
        "side": ["buy" if i % 2 else "sell" for i in range(n)],
    }


def event_rows(exchange: str, symbol: str | None, recv_ns: list[int], event: str,
               count: int | None = None, reason: str = "test") -> dict[str, list]:
    n = len(recv_ns)
    return {
        "exchange": [exchange] * n, "symbol": [symbol] * n, "channel": ["orderbook"] * n,
        "timestamp": [r // 1_000_000 for r in recv_ns], "recv_ns": recv_ns,
        "event": [event] * n, "reason": [reason] * n, "count": [count] * n,
    }


def merge(*parts: dict[str, list]) -> dict[str, list]:
    out: dict[str, list] = {}
    for p in parts:
        for k, v in p.items():
            out.setdefault(k, []).extend(v)
    return out


def spaced(start_ns: int, seconds: float, per_second: float) -> list[int]:
    """Receive times from start_ns over `seconds`, `per_second` rows a second."""
    n = max(1, int(seconds * per_second))
    step = int(seconds * NS / n)
    return [start_ns + i * step for i in range(n)]


def write_segment(data_dir: Path, state: str, start: datetime, seq: int,
                  channels: dict[str, dict[str, list]], host: str = "testhost",
                  closed: datetime | None = None) -> Path:
    """A finished segment (Parquet + manifest.json) or, for state 'active', Arrow journals."""
    store = SegmentStore(data_dir / "segments").ensure()
    seg = store.path(state, SegmentId.new(host, seq, start))
    seg.mkdir()
    manifest_channels = {}
    for channel, cols in channels.items():
        table = pa.Table.from_pydict(cols, schema=CHANNEL_SCHEMAS[channel])
        if state == "active":
            with pa.OSFile(str(seg / f"{channel}.arrows"), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
                w.write_table(table)
            continue
        path = seg / f"{channel}.parquet"
        pq.write_table(table, path, compression="zstd")
        ts = [t for t in cols.get("timestamp", []) if t is not None]
        manifest_channels[channel] = {
            "file": path.name, "rows": table.num_rows, "bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "min_ts": min(ts) if ts else None, "max_ts": max(ts) if ts else None,
        }
    if state != "active":
        closed = closed or datetime.now(timezone.utc)
        manifest = {"segment": seg.name, "host": host, "seq": seq, "format_version": FORMAT_VERSION,
                    "started": start.isoformat(), "closed": closed.isoformat(),
                    "channels": manifest_channels, "recovered": False, "torn_batches_dropped": 0}
        (seg / "manifest.json").write_text(json.dumps(manifest))
    return seg


def now_ns() -> int:
    return time.time_ns()
