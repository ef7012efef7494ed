"""Subscribers that outlive the ETL: `subscribe(reconnect=True)` (JSON rows and Arrow batches) and
`fluxforge live --reconnect` stay connected through an ETL SIGKILL + restart and an ETL stop +
start, and end up with exactly the rows that land in Parquet: every row once, in order, all
columns equal -- the rows published while they were away, and those the restarted ETL sent
again, included once.  The restarted ETL's replay ring starts with the recent rows already in
Parquet (etl/live_seed.py), so a reconnect after a restart finds no gap.

Real parts: the loopback exchange speaking Binance to unmodified ccxt, `fluxforge collect`,
`fluxforge etl` and `fluxforge live` as processes, the subscribe() client on the Unix socket;
every wait is on the condition itself.
"""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
from collector_support import collector_command, subprocess_env, wait_until
from live_support import Record, landed, published, row_keys, same_rows
from test_live_end_to_end import SYMBOLS, live_config

from fluxforge.bronze.segments import SegmentStore
from fluxforge.live import subscribe
from fluxforge.live.client import frames
from fluxforge.loopback import LoopbackExchange, SimOptions

META = ("product", "replay", "exchange", "symbol")


async def _spawn(cmd, log, stdout=subprocess.DEVNULL):
    return await asyncio.create_subprocess_exec(*cmd, env=subprocess_env(), stdout=stdout, stderr=log)


async def _take(sock: Path, out: list, batches: bool, retries: list) -> None:
    async for item in subscribe(socket=sock, batches=batches, reconnect=True,
                                on_retry=lambda e, delay: retries.append(str(e))):
        out.append(item)


async def _replayed(sock: Path) -> list[dict]:
    """The rows a new subscriber asking for the last hour gets before `live`."""
    out = []
    async for head, _ in frames(socket=sock, last_minutes=60):
        if head["type"] == "row":
            out.append(head)
        elif head["type"] == "live":
            return out


def _cli_rows(path: Path) -> list[dict]:
    text = path.read_text(errors="replace")
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


def test_reconnecting_subscribers_get_every_parquet_row_once_across_etl_restarts(tmp_path):
    data = tmp_path / "data"
    etl_log = tmp_path / "etl.log"
    cli_out = tmp_path / "cli.jsonl"
    store = SegmentStore(data / "segments")

    def done(n: int) -> bool:
        return len(store.list("done")) >= n

    async def body(sock: Path):
        sim = SimOptions(rate=20, trades_per_update=1.0, ticker_interval=0.5, seed=2718)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            config = live_config(tmp_path / "config.yaml", data, lx, sock, {"enabled": False})
            etl_cmd = [sys.executable, "-m", "fluxforge.cli", "etl", "--config", str(config)]
            rows, batches, retries = [], [], {"json": [], "arrow": []}
            with open(tmp_path / "collector.log", "ab") as clog, open(etl_log, "ab") as elog, \
                    open(tmp_path / "cli.log", "ab") as cli_log, open(cli_out, "wb") as cli_stdout:
                etl = await _spawn(etl_cmd, elog)
                await wait_until(sock.exists, 60, what="the ETL's live socket")
                clients = [asyncio.create_task(_take(sock, rows, False, retries["json"])),
                           asyncio.create_task(_take(sock, batches, True, retries["arrow"]))]
                cli = await _spawn([sys.executable, "-m", "fluxforge.cli", "live", "--config", str(config),
                                    "--socket", str(sock), "--reconnect", "--json"], cli_log, cli_stdout)
                await wait_until(lambda: etl_log.read_text(errors="replace").count('"live_subscribed"') == 3, 60,
                                 what="the three subscribers connected")
                collector = await _spawn(collector_command(config), clog)
                await wait_until(lambda: done(2) and rows and batches, 240, what="two segments and live rows")
                etl.send_signal(signal.SIGKILL)  # mid-segment: rows published, others not yet
                await etl.wait()
                etl = await _spawn(etl_cmd, elog)
                await wait_until(lambda: done(4), 240, what="segments after the ETL's SIGKILL")
                etl.send_signal(signal.SIGTERM)  # a clean stop: `closed` to every subscriber
                assert await asyncio.wait_for(etl.wait(), 60) == 0
                await wait_until(lambda: store.list("ready"), 60, what="a segment finished while the ETL is down")
                etl = await _spawn(etl_cmd, elog)
                await wait_until(lambda: done(6), 240, what="segments after the ETL's restart")
                landed_before = set(landed(data / "features"))  # what a late subscriber must get at least
                late = await _replayed(sock)
                collector.send_signal(signal.SIGTERM)  # finishes its segment into ready/
                assert await asyncio.wait_for(collector.wait(), 60) == 0
                await wait_until(lambda: not any(store.list(s) for s in ("active", "ready", "processing")), 120,
                                 what="the ETL processing the last segment")
                total = sum(t.num_rows for t in landed(data / "features").values())
                try:  # the last segment's final rows reach the subscribers after it lands
                    await wait_until(lambda: (len(rows), sum(b.batch.num_rows for b in batches),
                                              len(_cli_rows(cli_out))) == (total,) * 3, 60,
                                     what="every landed row at every subscriber")
                except AssertionError:
                    pass  # the comparison below says what is missing or extra
                for task in clients:
                    task.cancel()
                await asyncio.gather(*clients, return_exceptions=True)
                cli.terminate()
                await cli.wait()
                etl.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(etl.wait(), 60) == 0
            return rows, batches, retries, late, landed_before

    with tempfile.TemporaryDirectory(prefix="fflive-") as short:  # a Unix socket path has <= 107 bytes
        rows, batches, retries, late, landed_before = asyncio.run(asyncio.wait_for(body(Path(short) / "live.sock"), 900))
    assert not store.list("failed")
    log_text = etl_log.read_text(errors="replace")
    assert '"live_error"' not in log_text and '"live_seed_failed"' not in log_text, log_text[-3000:]
    assert '"live_replay_seeded"' in log_text  # the restarts began with the landed rows in the ring
    for fmt, errors in retries.items():  # each client saw both ends: the kill (EOF) and the stop (closed)
        assert any("closed the connection:" in e for e in errors) and len(errors) >= 2, (fmt, errors)
    cli_log = (tmp_path / "cli.log").read_text(errors="replace")
    assert cli_log.count("# resumed") >= 2 and "# disconnected" in cli_log, cli_log[-2000:]

    truth = landed(data / "features")
    assert {k[0] for k in truth} >= {"hf", "bars/interval=1s", "trade_bars/interval=1s"}, sorted(truth)
    # JSON rows: per stream exactly the Parquet rows' to_pylist(), in order, each once
    by_key: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_key[(r["product"], r["exchange"], r["symbol"])].append({k: v for k, v in r.items() if k not in META})
    assert set(by_key) == set(truth)
    for key, table in truth.items():
        assert same_rows(by_key[key], table.to_pylist()), (key, len(by_key[key]), table.num_rows)
    # Arrow batches: the same, compared as row identities (NaN == NaN)
    merged = published([Record(b.product, False, 0.0, pa.Table.from_batches([b.batch])) for b in batches], False)
    assert set(merged) == set(truth) and any(b.replay for b in batches)  # some came from a replay after a reconnect
    for key, table in truth.items():
        assert row_keys(merged[key]) == row_keys(table), key
    # a subscriber new after the restarts gets the last hour: from the first row on, not from the restart
    replayed: dict[tuple, list[int]] = defaultdict(list)
    for r in late:
        replayed[(r["product"], r["exchange"], r["symbol"])].append(r["timestamp"])
    # every stream that had landed by then; not necessarily the others: a stream's first row may land
    # later (a 60-s bar closes when the wall clock passes a minute, maybe after the subscription)
    assert landed_before <= set(replayed) <= set(truth), (sorted(landed_before - set(replayed)),
                                                          sorted(set(replayed) - set(truth)))
    for key, table in truth.items():
        ms = table.column("timestamp").cast(pa.int64()).to_pylist()
        assert replayed[key] == ms[:len(replayed[key])], key
    assert sum(map(len, replayed.values())) > 0.5 * sum(t.num_rows for t in truth.values())
    # the console subscriber: the same rows, per stream, in order (the wire's JSON lines)
    cli: dict[tuple, list[int]] = defaultdict(list)
    for r in _cli_rows(cli_out):
        cli[(r["product"], r["exchange"], r["symbol"])].append(r["timestamp"])
    for key, table in truth.items():
        assert cli[key] == table.column("timestamp").cast(pa.int64()).to_pylist(), key


def test_a_websocket_subscriber_resumes_on_the_restarted_hub_without_repeats(tmp_path):
    """Through the WebSocket, Arrow batches: the hub stops (`closed`), a new one starts on the same
    port and sends the rows again (flagged replay, as a restarted ETL does) before new ones: the
    subscriber, reconnected, has each row once, in order."""
    from live_support import TS, running_hub, wait_for

    t0 = (int(time.time()) - 60) * 1000

    def rows(start: int, n: int) -> pa.Table:  # two rows per time: resumed within a time too
        ts = [t0 + 1000 * ((start + i) // 2) for i in range(n)]
        return pa.table({"exchange": ["binance"] * n, "symbol": ["BTC/USDT"] * n,
                         "timestamp": pa.array(ts, pa.int64()).cast(TS), "seq": pa.array(range(start, start + n))})

    got, retries = [], []

    async def take(url: str) -> None:
        async for item in subscribe(url=url, products="hf", batches=True, reconnect=True,
                                    on_retry=lambda e, delay: retries.append(str(e))):
            got.extend(item.batch.column("seq").to_pylist())

    async def scenario():
        async with running_hub(port=0) as hub:
            port = hub.endpoints.ws_port
            client = asyncio.create_task(take(f"ws://127.0.0.1:{port}/live"))
            await wait_for(lambda: len(hub.subscribers) == 1, what="the subscriber")
            hub.publish("hf", rows(0, 5))  # seq 0-4: seq 4 is the first of two rows at its time
            await wait_for(lambda: len(got) == 5, what="the first rows")
        async with running_hub(port=port, replay_minutes=24 * 60) as hub:
            hub.publish("hf", rows(0, 8), replay=True)  # 0-4 again, then 5-7 never sent
            await wait_for(lambda: len(hub.subscribers) == 1, timeout=60, what="the subscriber back")
            hub.publish("hf", rows(8, 4))
            await wait_for(lambda: len(got) >= 12, what="the rows after the restart")
            client.cancel()
        return got

    assert asyncio.run(asyncio.wait_for(scenario(), 120)) == list(range(12))
    assert any("closed the connection:" in e for e in retries), retries
