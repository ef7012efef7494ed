"""Fleet-shaped bronze for replay/backfill tests and the backfill benchmark.

Several hosts collect the *same* symbols of the same exchange over the same
time span (so a replay that mixed hosts would interleave their streams), each
host's market differs (its own seed), and one host has an exchange-wide
`reconnect` row (symbol null) in the middle (so a replay that shared state
across hosts would reset the other hosts' symbols).  Segments are real: written
through the collector's journals and finishing (tests/etl_support.py), split by
receive time like a collector rotates.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from etl_support import T0_MS, synthetic_market, write_segments
from fluxforge.bronze import schemas as bronze

SYMBOLS = ("BTC/USDT", "ETH/USDT")


def exchange_wide_reconnect(exchange: str, at_ms: int) -> pa.Table:
    """One `reconnect` event row for the whole exchange (symbol null)."""
    return pa.table({"exchange": [exchange], "symbol": pa.array([None], pa.string()), "channel": ["orderbook"],
                     "timestamp": [at_ms], "recv_ns": [at_ms * 1_000_000], "event": ["reconnect"],
                     "reason": ["test reconnect"], "count": pa.array([None], pa.int64())}, schema=bronze.EVENTS)


def host_tables(index: int, symbols=SYMBOLS, seconds: float = 60.0, hz: float = 10.0,
                reconnect_at_s: float | None = None) -> dict[str, pa.Table]:
    tables = synthetic_market(symbols=symbols, seconds=seconds, hz=hz, seed=100 + index)
    if reconnect_at_s is not None:
        ev = exchange_wide_reconnect("binance", T0_MS + int(reconnect_at_s * 1000))
        tables["events"] = pa.concat_tables([tables["events"], ev]).sort_by("recv_ns")
    return tables


def write_fleet(root: Path, hosts=("pi01", "pi02"), symbols=SYMBOLS, segments: int = 3, seconds: float = 60.0,
                hz: float = 10.0) -> dict[str, list[Path]]:
    """{host: its segment directories} under root/<host>/ (the first host gets the reconnect)."""
    out = {}
    for i, host in enumerate(hosts):
        tables = host_tables(i, symbols, seconds, hz, reconnect_at_s=seconds / 2 if i == 0 else None)
        out[host] = write_segments(root / host, tables, segments, host=host, seconds=seconds)
    return out


def capture_host_tables(capture_dir: Path, rows: int = 3000) -> dict[str, pa.Table]:
    """The first `rows` books (by receive time) of the real BTC and ETH captures, with their trades."""
    from tests.reference.binance_capture import load

    books, trades = [], []
    for name, symbol in (("btcusdt_20240808.gz", "BTC/USDT"), ("ethusdt_20240808.gz", "ETH/USDT")):
        b, t = load(capture_dir / name, symbol=symbol)
        books.append(b)
        trades.append(t)
    book = pa.concat_tables(books).sort_by("recv_ns").slice(0, rows)
    last_recv = book.column("recv_ns")[-1].as_py()
    trade = pa.concat_tables(trades).sort_by("recv_ns")
    trade = trade.filter(pa.compute.less_equal(trade.column("recv_ns"), last_recv))
    events = pa.table({c: pa.array([], f.type) for c, f in zip(bronze.EVENTS.names, bronze.EVENTS)},
                      schema=bronze.EVENTS)
    return {"orderbook": book, "trades": trade, "events": events}


def write_capture_host(root: Path, capture_dir: Path, host: str = "cap01", segments: int = 2,
                       rows: int = 3000) -> list[Path]:
    tables = capture_host_tables(capture_dir, rows)
    recv = tables["orderbook"].column("recv_ns")
    start_ms = recv[0].as_py() // 1_000_000
    seconds = (recv[-1].as_py() // 1_000_000 - start_ms) / 1000
    return write_segments(root / host, tables, segments, host=host, start_ms=start_ms, seconds=seconds)
