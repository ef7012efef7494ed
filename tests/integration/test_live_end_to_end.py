"""The two halves of live features meet: the real ETL service (`fluxforge etl`, etl.live on)
follows a collector recording the loopback exchange, and real `fluxforge.live.subscribe()`
clients on its Unix socket -- one taking JSON rows, one Arrow batches -- receive exactly the
rows that later land in Parquet: every row once, in order, all columns equal (NaN == NaN,
nulls, timestamps), across segment rotations.

Real parts: the loopback exchange speaking Binance to unmodified ccxt, `fluxforge collect` and
`fluxforge etl` as processes (no test hub: what a strategy gets), the subscribe() client over
the socket; every wait is on the condition itself.
"""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from collector_support import collector_command, config_dict, subprocess_env, wait_until
from live_support import Record, landed, published, row_keys, same_rows
from test_collector_e2e import binance_entry
from test_metrics_collect import scrape

from fluxforge.bronze.segments import SegmentStore
from fluxforge.live import LiveClosed, subscribe
from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
META = ("product", "replay", "exchange", "symbol")


async def _spawn(cmd, log):
    return await asyncio.create_subprocess_exec(*cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=log)


async def _take(sock: Path, out: list, batches: bool) -> None:
    """Everything the socket serves until the ETL stops (LiveClosed)."""
    try:
        async for item in subscribe(socket=sock, batches=batches):
            out.append(item)
    except LiveClosed:
        pass


def _scrape_etl(etl_log: Path) -> dict[tuple, float]:
    """The ETL's /metrics (its port from its `metrics_listening` event), as {(name, *labels): value}."""
    events = [json.loads(line) for line in etl_log.read_text(errors="replace").splitlines() if line.startswith("{")]
    return scrape(next(e["port"] for e in events if e.get("event") == "metrics_listening"))


def live_config(path: Path, data: Path, lx, sock: Path, metrics: dict) -> Path:
    """config.yaml of a collector recording SYMBOLS from `lx` (4 s segments, 0.25 s flushes) and a
    live ETL (1 s reorder window) serving on `sock`; `metrics`: the config's metrics section."""
    cfg = config_dict(data, [binance_entry(lx, SYMBOLS, book_depth=20)], flush_interval=0.25, segment_max_seconds=4.0)
    cfg["etl"] = {"poll_interval": 0.2, "reorder_window": 1.0,
                  "live": {"enabled": True, "poll_interval": 0.05, "socket": str(sock)}}
    cfg["metrics"] = metrics
    path.write_text(yaml.safe_dump(cfg))
    return path


def _received_rows(rows: list[dict], batches: list) -> tuple[int, int]:
    return len(rows), sum(b.batch.num_rows for b in batches)


def test_subscribers_of_the_running_etl_receive_the_parquet_rows(tmp_path):
    data = tmp_path / "data"
    etl_log = tmp_path / "etl.log"
    store = SegmentStore(data / "segments")

    async def body(sock: Path):
        sim = SimOptions(rate=20, trades_per_update=1.0, ticker_interval=0.5, seed=1414)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            config = live_config(tmp_path / "config.yaml", data, lx, sock, {"collector_port": 0, "etl_port": 0})
            rows, batches = [], []
            with open(tmp_path / "collector.log", "ab") as clog, open(etl_log, "ab") as elog:
                etl = await _spawn([sys.executable, "-m", "fluxforge.cli", "etl", "--config", str(config)], elog)
                await wait_until(sock.exists, 60, what="the ETL's live socket")
                clients = [asyncio.create_task(_take(sock, rows, False)),
                           asyncio.create_task(_take(sock, batches, True))]
                await wait_until(lambda: etl_log.read_text(errors="replace").count('"live_subscribed"') == 2, 60,
                                 what="both clients subscribed (before any row exists)")
                collector = await _spawn(collector_command(config), clog)
                await wait_until(lambda: len(store.list("done")) >= 3 and rows and batches, 240,
                                 what="three segments and live rows")
                collector.send_signal(signal.SIGTERM)  # finishes its segment into ready/
                assert await asyncio.wait_for(collector.wait(), 60) == 0
                await wait_until(lambda: not any(store.list(s) for s in ("active", "ready", "processing")), 120,
                                 what="the ETL processing the last segment")
                total = sum(t.num_rows for t in landed(data / "features").values())
                # the last segment's final rows are published when it is processed: wait until both
                # clients have them all (or time out and let the comparison below say what is missing)
                try:
                    await wait_until(lambda: _received_rows(rows, batches) == (total, total), 60,
                                     what="every landed row at both subscribers")
                except AssertionError:
                    pass
                metrics = await asyncio.get_running_loop().run_in_executor(None, _scrape_etl, etl_log)
                etl.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(etl.wait(), 60) == 0
                await asyncio.wait_for(asyncio.gather(*clients), 30)  # the ETL's stop closes them
            return rows, batches, metrics

    with tempfile.TemporaryDirectory(prefix="fflive-") as short:  # a Unix socket path has <= 107 bytes
        rows, batches, metrics = asyncio.run(asyncio.wait_for(body(Path(short) / "live.sock"), 900))
    assert not store.list("failed")
    log_text = etl_log.read_text(errors="replace")
    assert '"live_error"' not in log_text and '"live_chunks_mismatch"' not in log_text, log_text[-3000:]

    truth = landed(data / "features")
    assert {k[0] for k in truth} >= {"hf", "bars/interval=1s", "trade_bars/interval=1s"}, sorted(truth)
    assert not any(r["replay"] for r in rows) and not any(b.replay for b in batches)  # no restart: no replays

    # /metrics of the live path, scraped once every row was with both clients
    assert metrics[("fluxforge_live_rows_published_total",)] == len(rows)
    for name in ("errors", "rows_replayed", "rows_not_landed"):
        assert metrics[(f"fluxforge_live_{name}_total",)] == 0, name
    assert metrics[("fluxforge_live_latency_target_seconds",)] == 0.25 + 1.0 + 0.5  # flush + reorder + 0.5
    p50 = metrics[("fluxforge_live_publish_latency_seconds", ("quantile", "0.5"))]
    p99 = metrics[("fluxforge_live_publish_latency_seconds", ("quantile", "0.99"))]
    # an hf row is final once both streams are a reorder window (1 s) past it, and the loopback
    # stamps its events with this machine's clock: no row can be published sooner
    assert 1.0 <= p50 <= p99 < 60, (p50, p99)
    # the ring holds every row published (well within replay_minutes): oldest to newest of them all
    ms = [pc.cast(b.batch.column("timestamp"), pa.int64()).to_numpy() for b in batches]
    span = (max(int(m.max()) for m in ms) - min(int(m.min()) for m in ms)) / 1000
    assert metrics[("fluxforge_live_replay_seconds",)] == span
    assert metrics[("fluxforge_live_replay_bytes",)] > 0

    # Arrow batches: per (product, exchange, symbol), exactly the Parquet rows in order
    arrow = published([Record(b.product, b.replay, 0.0, pa.Table.from_batches([b.batch])) for b in batches], False)
    assert set(arrow) == set(truth)
    for key, table in truth.items():
        assert row_keys(arrow[key]) == row_keys(table), key

    # JSON rows: the dicts a strategy gets equal the Parquet rows' to_pylist() (types, NaN, None)
    by_key: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_key[(r["product"], r["exchange"], r["symbol"])].append({k: v for k, v in r.items() if k not in META})
    assert set(by_key) == set(truth)
    for key, table in truth.items():
        assert same_rows(by_key[key], table.to_pylist()), key
