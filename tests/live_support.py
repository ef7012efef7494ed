"""Helpers for the live-features tests, both halves: a hub on a real Unix socket and rows for the
serving tests; an ETL process whose hub also records every publication, and the comparison of
what was published live with what landed in Parquet, for the computation tests.

The hub is the real one (fluxforge/live/hub.py) bound to a real socket in a short
temp directory (Unix socket paths are limited to 107 bytes, pytest's tmp paths can
be longer); subscribers are real clients over that socket.

Why a child process for the ETL: it must be SIGKILLed like systemd would find it, so the
observation point is outside it -- its hub appends each publication (product, replay
flag, publish time, the rows as Arrow IPC) to a file before serving it; a record torn by
the kill is not read (its rows come again as replays).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fluxforge.etl.naming import exchange_from_path_value, symbol_from_path_value
from fluxforge.live.hub import LiveHub
from fluxforge.live.row_equality import same_rows  # noqa: F401  (the tests import it from here)
from fluxforge.live.settings import LiveConfig

HERE = Path(__file__).resolve().parent
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


async def json_wire_rows(n: int, **kw) -> list[dict]:
    """The first `n` rows of a subscription over the JSON wire, decoded as a client in another
    language would (`fluxforge.live.subscribe` takes the Arrow wire): each `row` line with its
    product's schema (wire.RowDecoder)."""
    from fluxforge.live import wire
    from fluxforge.live.client import frames

    rows, decoders = [], {}
    async with contextlib.aclosing(frames(format="json", **kw)) as stream:
        async for head, payload in stream:
            if head["type"] == "schema":
                decoders[head["product"]] = wire.RowDecoder(wire.read_schema(head, payload))
            elif head["type"] == "row":
                rows.append(decoders[head["product"]](head))
                if len(rows) >= n:
                    break
    return rows


async def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll a real condition (not a fixed sleep) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def flushes(m: dict[str, pa.Table], flush_ns: int, start: int | None = None):
    """The tables as the collector's flushes deliver them: (end, rows) of each `flush_ns` of receive
    time from `start` (receive ns; default: the first row received), channel by channel."""
    recv = {name: t.column("recv_ns").to_numpy() for name, t in m.items()}
    end = max(int(r.max()) for r in recv.values() if len(r))
    start = min(int(r.min()) for r in recv.values() if len(r)) if start is None else start
    for lo in range(start, end + flush_ns, flush_ns):
        yield lo + flush_ns, {name: t.filter(pa.array((recv[name] >= lo) & (recv[name] < lo + flush_ns)))
                              for name, t in m.items()}


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


class RecordingHub(LiveHub):
    """The real hub (it still serves its socket) that first appends every publication to `path`
    (the test's observation point)."""

    def __init__(self, path: str | Path, cfg: LiveConfig, state_dir: Path, socket_path: Path | None = None):
        super().__init__(cfg, state_dir, socket_path)
        self._f = open(path, "ab")

    def publish(self, product: str, table: pa.Table, *, replay: bool = False, runs: list | None = None) -> None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        body = sink.getvalue().to_pybytes()
        head = json.dumps({"product": product, "replay": replay, "bytes": len(body), "t": time.time()}).encode()
        self._f.write(len(head).to_bytes(4, "little") + head + body)
        self._f.flush()
        super().publish(product, table, replay=replay, runs=runs)  # (the ETL's runs: the hub's path as in service)

    async def close(self) -> None:
        await super().close()
        self._f.close()


def run_etl(config: str, record: str) -> None:
    """Child entry point: `fluxforge etl` with a RecordingHub."""
    from fluxforge.config import load_config
    from fluxforge.etl.service import EtlService
    from fluxforge.logs import configure_logging

    cfg = load_config(config)
    configure_logging(cfg.logging.level, cfg.logging.format, "fluxforge-etl")
    service = EtlService(cfg)
    assert service.hub is not None, "these tests turn etl.live.enabled on in their config"
    service.hub = RecordingHub(record, cfg.etl.live, cfg.state_dir, service.hub.socket_path)
    sys.exit(asyncio.run(service.run()))


def etl_command(config: Path, record: Path) -> list[str]:
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import live_support; "
            f"live_support.run_etl({str(config)!r}, {str(record)!r})")
    return [sys.executable, "-c", code]


@dataclass
class Record:
    product: str
    replay: bool
    t: float
    table: pa.Table


def read_records(path: Path) -> list[Record]:
    data = path.read_bytes() if path.exists() else b""
    out, pos = [], 0
    while pos + 4 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "little")
        if pos + 4 + n > len(data):
            break
        head = json.loads(data[pos + 4:pos + 4 + n])
        start = pos + 4 + n
        if start + head["bytes"] > len(data):
            break
        table = pa.ipc.open_stream(pa.py_buffer(data[start:start + head["bytes"]])).read_all()
        out.append(Record(head["product"], head["replay"], head["t"], table))
        pos = start + head["bytes"]
    return out


def landed(features: Path) -> dict[tuple[str, str, str], pa.Table]:
    """(product, exchange, symbol) -> its Parquet rows in segment order (part names sort by segment)."""
    parts: dict[tuple[str, str, str], list[tuple[str, Path]]] = defaultdict(list)
    for p in features.rglob("part-*.parquet"):
        rel = p.relative_to(features).parts
        ex = next(i for i, s in enumerate(rel) if s.startswith("exchange="))
        product = "/".join(rel[:ex])
        key = (product, exchange_from_path_value(rel[ex].split("=", 1)[1]),
               symbol_from_path_value(rel[ex + 1].split("=", 1)[1]))
        parts[key].append((rel[ex + 2] + p.name, p))
    return {k: pa.concat_tables([pq.read_table(p) for _, p in sorted(v)]) for k, v in parts.items()}


def published(records: list[Record], replay: bool) -> dict[tuple[str, str, str], pa.Table]:
    """(product, exchange, symbol) -> the rows published (with that replay flag), in order (a
    publication holds one product's rows of one or more symbols)."""
    groups: dict[tuple[str, str, str], list[pa.Table]] = defaultdict(list)
    for r in records:
        if r.replay != replay or r.table.num_rows == 0:
            continue
        ex, sym = r.table.column("exchange"), r.table.column("symbol")
        for e, s in dict.fromkeys(zip(ex.to_pylist(), sym.to_pylist())):
            rows = r.table.filter(pc.and_(pc.equal(ex, e), pc.equal(sym, s)))
            groups[(r.product, e, s)].append(rows.drop_columns(["exchange", "symbol"]))
    return {k: pa.concat_tables(v) for k, v in groups.items()}


def row_keys(table: pa.Table) -> list[str]:
    """A printable identity per row (NaN equal to NaN) for set comparisons."""
    cols = [c.to_pylist() for c in table.columns]
    return [repr(tuple(np.nan if isinstance(v, float) and v != v else v for v in row)) for row in zip(*cols)]


def first_difference(a: pa.Table, b: pa.Table) -> str:
    ka, kb = row_keys(a), row_keys(b)
    for i, (x, y) in enumerate(zip(ka, kb)):
        if x != y:
            return f"row {i}: live {x[:300]} != parquet {y[:300]}"
    return f"live {len(ka)} rows, parquet {len(kb)} rows"
