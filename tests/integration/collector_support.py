"""Helpers for collector tests: configs pointing at a loopback exchange, running the
collector in-process or as a subprocess, and reading back what reached ready/.

Every wait is bounded; servers bind ephemeral ports on 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from fluxforge.bronze.schemas import CHANNEL_SCHEMAS, OPTIONAL_CHANNELS
from fluxforge.config import Config, parse_config
from fluxforge.bronze.segments import SegmentStore

FAST_COLLECTOR = {
    "flush_interval": 0.2,
    "segment_max_seconds": 2.0,
    "stall_timeout": 2.0,
    "reconnect_backoff_initial": 0.1,
    "reconnect_backoff_max": 0.5,
    "snapshot_spacing": 0.02,
    "min_free_mb": 0,
}


def config_dict(data_dir: Path, exchanges: list[dict], **collector) -> dict:
    return {
        "data_dir": str(data_dir),
        "host_id": "test",
        "exchanges": exchanges,
        "collector": {**FAST_COLLECTOR, **collector},
        "logging": {"level": "INFO", "format": "json"},
    }


def exchange_entry(lx, name: str, symbols: list[str], **extra) -> dict:
    return {"name": name, "ccxt": lx.ccxt_config(name), "symbols": symbols, **extra}


def make_config(data_dir: Path, exchanges: list[dict], **collector) -> Config:
    return parse_config(config_dict(data_dir, exchanges, **collector))


def write_config(path: Path, data_dir: Path, exchanges: list[dict], **collector) -> Path:
    path.write_text(yaml.safe_dump(config_dict(data_dir, exchanges, **collector)))
    return path


async def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def drained(lx, collector, timeout: float = 30.0) -> None:
    """Barrier: every frame the loopback has sent so far has been handled by the collector.

    Freeze the market first.  A malformed frame is queued behind everything already
    queued on each live connection; a connection delivers in order, so once the tap
    has recorded one `error` event per such frame, every earlier frame was handled
    (kept or dropped with accounting).  Waiting on this instead of sleeping makes
    "what was sent == what was stored" exact on a loaded machine.

    `collector`: an in-process Collector, or (for a subprocess) a callable returning how
    many `error` events it has logged so far.
    """
    errors = collector if callable(collector) else (lambda: collector.recorder.event_counts["error"])
    before = errors()
    live = [c for c in lx.hub.connections if not c.closed and not c.stalled()]
    for conn in live:
        conn.enqueue('{"e":"drained","E":1,"s":')  # truncated JSON: the tap records an `error`
    # a connection that closes meanwhile (e.g. the collector's stall reconnect) delivers nothing more
    await wait_until(lambda: errors() >= before + sum(1 for c in live if not c.closed), timeout,
                     what="collector drained")


async def books_across_a_reconnect(lx, collector, protocol: str, symbols: list[str], updates: int = 20) -> list:
    """`updates` book messages of every symbol, a disconnect of every `protocol` connection, a new
    snapshot and `updates` more of each, then freeze and drain.  The symbols' orderbook sent-logs."""
    streams = [lx.sent.stream(protocol, s, "orderbook") for s in symbols]
    await wait_until(lambda: all(st.messages >= updates for st in streams), 30, what=f"{updates} book updates each")
    assert await lx.faults.disconnect(protocol=protocol) >= 1
    await wait_until(lambda: all(len(st.snapshots) == 2 for st in streams), 30, what="a second snapshot of every book")
    after = [len(st.values) for st in streams]
    await wait_until(lambda: all(len(st.values) >= n + updates for st, n in zip(streams, after)), 30,
                     what=f"{updates} book updates each after the reconnect")
    lx.freeze()
    await drained(lx, collector)
    return streams


async def replay_capture(lx, collector, symbols, exchange: str = "binance") -> None:
    """Run a frozen capture replay (`LoopbackExchange("replay", ...)`, frozen before the collector
    started) through `collector`: released once every symbol's REST snapshot is its first book
    row, then awaited until the whole capture is sent and everything sent was handled."""
    seen = collector.recorder.last_seen
    await wait_until(lambda: all((exchange, "orderbook", s) in seen for s in symbols), 60,
                     what="every symbol's book snapshot")
    lx.freeze(False)
    await wait_until(lambda: lx.source.finished, timeout=300, what="capture replay to finish")
    await drained(lx, collector)


def record_capture(data: Path, files: list[Path], symbols: list[str], channels: list[str],
                   segment_max_seconds: float = 2.0) -> None:
    """The real Binance captures `files` replayed at 40x through the loopback exchange into a
    collector writing under `data` (depth-20 books, the collector's own ccxt options): the
    bronze segments the realdata tests then run the ETL and the readers on."""
    from fluxforge.loopback import LoopbackExchange

    async def body():
        lx = LoopbackExchange("replay", replay_files=files, speed=40.0)
        lx.freeze()  # hold the replay until the collector has its snapshots
        async with lx:
            entry = {"name": "binance", "ccxt": lx.ccxt_config("binance"), "symbols": symbols,
                     "book_depth": 20, "channels": channels}
            cfg = parse_config(config_dict(data, [entry], segment_max_seconds=segment_max_seconds))
            async with running_collector(cfg) as col:
                await replay_capture(lx, col, symbols)

    asyncio.run(body())


def logged_errors(log_path: Path) -> int:
    """`stream_error` events in a collector subprocess's JSON log (see `drained`)."""
    try:
        return log_path.read_text(errors="replace").count('"event": "stream_error"')
    except FileNotFoundError:
        return 0


def missing_rows(tables: dict[str, pa.Table], sent, exchange: str, protocol: str, symbols: list[str]) -> dict:
    """(channel, symbol) -> how many rows the exchange sent that ready/ does not hold.

    Also asserts nothing was invented or duplicated.  Books count from the first stored
    book on (updates before the first snapshot are not data ccxt keeps)."""
    from collections import Counter
    out: Counter = Counter()
    for symbol in symbols:
        nonces = [r["nonce"] for r in rows_of(tables["orderbook"], exchange=exchange, symbol=symbol)]
        assert nonces and nonces == sorted(set(nonces)), f"{symbol}: book nonces out of order or duplicated"
        after = {i for i in sent.stream(protocol, symbol, "orderbook").ids if i > nonces[0]}
        assert set(nonces[1:]) <= after, f"{symbol}: stored book updates that were never sent"
        out[("orderbook", symbol)] = len(after - set(nonces))
        stored = [int(r["trade_id"]) for r in rows_of(tables["trades"], exchange=exchange, symbol=symbol)]
        sent_trades = sent.stream(protocol, symbol, "trades").ids
        assert len(stored) == len(set(stored)) and set(stored) <= set(sent_trades), f"{symbol}: trades invented"
        out[("trades", symbol)] = len(set(sent_trades) - set(stored))
        tickers = len(rows_of(tables["ticker"], exchange=exchange, symbol=symbol))
        sent_tickers = sent.stream(protocol, symbol, "ticker").messages
        assert tickers <= sent_tickers, symbol
        out[("ticker", symbol)] = sent_tickers - tickers
    return out


@contextlib.asynccontextmanager
async def running_collector(cfg: Config, **kwargs):
    """Run `Collector(cfg).run()` in this loop; on exit stop it cleanly and check it returned 0."""
    from fluxforge.collector.app import Collector

    collector = Collector(cfg, **kwargs)
    task = asyncio.create_task(collector.run(stop_timeout=9.0))
    try:
        yield collector
    finally:
        collector.request_stop()
        rc = await asyncio.wait_for(task, 30)
        assert rc == 0


def ready_segments(data_dir: Path) -> list[Path]:
    return SegmentStore(Path(data_dir) / "segments").list("ready")


def segment_table(seg: Path, ch: str) -> pa.Table:
    """One finished segment's rows of one channel, checked against its manifest; an optional
    channel the segment does not record has no file at all and reads as no rows."""
    manifest = json.loads((seg / "manifest.json").read_text())
    if ch not in manifest["channels"]:
        assert ch in OPTIONAL_CHANNELS and not (seg / f"{ch}.parquet").exists(), (seg, ch)
        return CHANNEL_SCHEMAS[ch].empty_table()
    t = pq.read_table(seg / f"{ch}.parquet")
    assert t.schema.equals(CHANNEL_SCHEMAS[ch]), (seg, ch)
    assert t.num_rows == manifest["channels"][ch]["rows"], (seg, ch)
    return t


def ready_tables(data_dir: Path) -> dict[str, pa.Table]:
    """All ready/ segments, channel by channel, in segment order; checks manifests on the way."""
    segs = ready_segments(data_dir)
    return {ch: pa.concat_tables([segment_table(s, ch) for s in segs]) if segs else schema.empty_table()
            for ch, schema in CHANNEL_SCHEMAS.items()}


def rows_of(table: pa.Table, **where) -> list[dict]:
    return [r for r in table.to_pylist() if all(r[k] == v for k, v in where.items())]


def events(data_dir: Path, **where) -> list[dict]:
    return rows_of(ready_tables(data_dir)["events"], **where)


# `python -m fluxforge.cli ...` that writes, at exit, the names of the modules it had imported
_LISTING_MODULES = r"""
import atexit, json, runpy, sys
out, sys.argv = sys.argv[1], ["fluxforge", *sys.argv[2:]]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
runpy.run_module("fluxforge.cli", run_name="__main__", alter_sys=True)
"""


def collector_command(config: Path, modules_to: Path | None = None) -> list[str]:
    """The collector as the service runs it; `modules_to`: a file that receives, at exit, the
    JSON list of the modules the process imported."""
    if modules_to is not None:
        return [sys.executable, "-c", _LISTING_MODULES, str(modules_to), "collect", "--config", str(config)]
    return [sys.executable, "-m", "fluxforge.cli", "collect", "--config", str(config)]


def subprocess_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env
