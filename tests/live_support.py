"""Helpers for the live-features tests: an ETL process whose hub records every publication,
and the comparison of what was published live with what landed in Parquet.

Why a child process: the ETL must be SIGKILLed like systemd would find it, so the
observation point is outside it -- its hub appends each publication (product, replay
flag, publish time, the rows as Arrow IPC) to a file; a record torn by the kill is
not read (its rows come again as replays).
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fluxforge.live.hub import LiveHub

HERE = Path(__file__).resolve().parent


class RecordingHub(LiveHub):
    """A hub that appends every publication to `path` (the test's observation point)."""

    def __init__(self, path: str | Path):
        super().__init__()
        self._f = open(path, "ab")

    def publish(self, product: str, table: pa.Table, *, replay: bool = False) -> None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        body = sink.getvalue().to_pybytes()
        head = json.dumps({"product": product, "replay": replay, "bytes": len(body), "t": time.time()}).encode()
        self._f.write(len(head).to_bytes(4, "little") + head + body)
        self._f.flush()

    async def close(self) -> None:
        self._f.close()


def run_etl(config: str, record: str) -> None:
    """Child entry point: `fluxforge etl` with a RecordingHub."""
    from fluxforge.config import load_config
    from fluxforge.etl.service import EtlService
    from fluxforge.logs import configure_logging

    cfg = load_config(config)
    configure_logging(cfg.logging.level, cfg.logging.format, "fluxforge-etl")
    service = EtlService(cfg)
    service.hub = RecordingHub(record)
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
    from fluxforge.etl.naming import exchange_from_path_value, symbol_from_path_value

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
    """(product, exchange, symbol) -> the rows published (with that replay flag), in order."""
    groups: dict[tuple[str, str, str], list[pa.Table]] = defaultdict(list)
    for r in records:
        if r.replay != replay or r.table.num_rows == 0:
            continue
        ex, sym = set(r.table.column("exchange").to_pylist()), set(r.table.column("symbol").to_pylist())
        assert len(ex) == len(sym) == 1, "one symbol per publication"
        groups[(r.product, ex.pop(), sym.pop())].append(r.table.drop_columns(["exchange", "symbol"]))
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
