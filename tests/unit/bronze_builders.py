"""Builders of small, real bronze segments for the status / inspect / report tests.

Why here and not fixtures: the tests prepare whole data directories (segments in
several states, journals, events rows, feature bars) and need precise control
of times; plain functions keep each test's situation readable.
"""
from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from fluxforge.bronze.active_segment import ActiveSegment
from fluxforge.bronze.schemas import CHANNEL_SCHEMAS
from fluxforge.bronze.finish import build_segment
from fluxforge.bronze.segments import SegmentStore

NS = 1_000_000_000


def book_rows(exchange: str, symbol: str, recv_ns: list[int], mid: float = 100.0) -> dict[str, list]:
    n = len(recv_ns)
    return {
        "exchange": [exchange] * n, "symbol": [symbol] * n,
        "timestamp": [r // 1_000_000 for r in recv_ns], "recv_ns": recv_ns,
        "kind": ["snapshot"] * n, "nonce": list(range(1, n + 1)), "prev_nonce": [None] * n, "checksum": [None] * n,
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
    """A real segment made by the collector's code: journals for 'active', else finished and moved.

    `closed` overrides the manifest's closed time (default: now), to age a segment.
    """
    store = SegmentStore(data_dir / "segments").ensure()
    tables = {ch: pa.Table.from_pydict(cols, schema=CHANNEL_SCHEMAS[ch]) for ch, cols in channels.items()}
    if state == "active":
        seg = ActiveSegment.create(store, host, seq=seq, when=start)
        for channel, table in tables.items():
            for batch in table.to_batches():
                seg.write(channel, batch, sync=False)
        seg.close()
        return seg.path
    seg = build_segment(store, host, tables, when=start, seq=seq)
    if closed is not None:
        manifest = json.loads((seg / "manifest.json").read_text())
        manifest["closed"] = closed.isoformat()
        (seg / "manifest.json").write_text(json.dumps(manifest))
    return seg if state == "ready" else store.move(seg, state)


def now_ns() -> int:
    return time.time_ns()
