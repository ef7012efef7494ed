"""Test support for live serving: a hub on a real Unix socket, rows, NaN-aware comparison.

The hub is the real one (fluxforge/live/hub.py) bound to a real socket in a short
temp directory (Unix socket paths are limited to 107 bytes, pytest's tmp paths can
be longer); subscribers are real clients over that socket.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fluxforge.etl.naming import exchange_from_path_value, symbol_from_path_value
from fluxforge.live.hub import LiveHub
from fluxforge.live.settings import LiveConfig

TS = pa.timestamp("ms", tz="UTC")


@contextlib.asynccontextmanager
async def running_hub(**cfg):
    """A started LiveHub on <short temp dir>/live.sock; closed on exit."""
    with tempfile.TemporaryDirectory(prefix="fflive-") as d:
        hub = LiveHub(LiveConfig(**cfg), socket_path=Path(d) / "live.sock")
        await hub.start()
        try:
            yield hub
        finally:
            await hub.close()


def rows_table(exchange: str, symbol: str, start: int, n: int, step_ms: int = 1000) -> pa.Table:
    """n feature-like rows: timestamps start, start+step, ...; `seq` counts from `start`."""
    ts = [start + i * step_ms for i in range(n)]
    return pa.table({"exchange": [exchange] * n, "symbol": [symbol] * n, "timestamp": pa.array(ts, pa.int64()).cast(TS),
                     "seq": pa.array(range(start, start + n), pa.int64()),
                     "value": pa.array([float(i) if i % 3 else math.nan for i in range(n)], pa.float64()),
                     "maybe": pa.array([None if i % 4 == 0 else i for i in range(n)], pa.int64())})


async def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll a real condition (not a fixed sleep) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def same_rows(got: list[dict], want: list[dict]) -> bool:
    """Row dicts equal key by key, value by value (NaN == NaN, types must match: 1 != 1.0)."""
    if len(got) != len(want):
        return False
    return all(list(g) == list(w) and all(same_value(g[k], w[k]) for k in w) for g, w in zip(got, want))


def feature_parts(features: Path) -> list[tuple[str, pa.Table]]:
    """(product, rows) of every part under features/, as the ETL hands rows to the hub: the part's
    columns plus exchange and symbol (from its partition), product = the tree path (hf, bars/interval=60s)."""
    out = []
    for part in sorted(Path(features).rglob("part-*.parquet")):
        rel = part.relative_to(features).parent.parts
        keys = dict(p.split("=", 1) for p in rel if "=" in p and not p.startswith("interval="))
        product = "/".join(p for p in rel if "=" not in p or p.startswith("interval="))
        table = pq.read_table(part, partitioning=None)
        n = table.num_rows
        table = table.append_column("exchange", pa.array([exchange_from_path_value(keys["exchange"])] * n)) \
                     .append_column("symbol", pa.array([symbol_from_path_value(keys["symbol"])] * n))
        out.append((product, table))
    return out
