"""Crash safety on the newer venues: SIGKILL the collector a few times under load, against
Binance US, Kraken v2 and Coinbase Advanced Trade at once, restarting each time.

The full 20-kill loss-window study runs on Binance (test_collector_crash.py); here the
question is whether anything venue-specific breaks across kills: ready/ reads cleanly,
nothing is duplicated or invented (a Kraken book row must carry a checksum the exchange
sent, a Binance US row a sent update id, a Coinbase book is never crossed), and what a kill loses is a tail of at most one
flush interval (plus slack on a loaded 2-core box), never a hole.
"""
from __future__ import annotations

import asyncio
import bisect
import random
import signal
import subprocess
import time

from collector_support import (collector_command, exchange_entry, ready_tables, rows_of, subprocess_env,
                               wait_until, write_config)
from test_collector_e2e import binance_entry
from test_collector_kraken import row_checksum

from fluxforge.bronze.segments import SegmentStore
from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
FLUSH = 0.25
SLACK = 1.0
KILLS = 5


async def kill_and_restart(lx, cfg, log, rng) -> list[tuple[int, int]]:
    """KILLS runs ended by SIGKILL under load, then one clean run; the (start_ns, end_ns) of each."""
    runs = []
    for i in range(KILLS + 1):
        proc = await asyncio.create_subprocess_exec(*collector_command(cfg), env=subprocess_env(),
                                                    stdout=subprocess.DEVNULL, stderr=log)
        start = time.time_ns()
        before = sum(st.messages for st in lx.sent.streams.values())
        await wait_until(lambda: sum(st.messages for st in lx.sent.streams.values()) > before + 50
                         or proc.returncode is not None, 60, what="collector receiving")
        assert proc.returncode is None
        if i < KILLS:
            await asyncio.sleep(rng.uniform(0.0, 2.0))
            end = time.time_ns()
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        else:
            await asyncio.sleep(3.0)
            lx.freeze()
            await asyncio.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
            end = time.time_ns()
        runs.append((start, end))
    return runs


def assert_trades_lose_only_tails(stored_ids: list[int], stream, runs) -> None:
    assert len(stored_ids) == len(set(stored_ids)), "duplicated trades"
    stored, starts = set(stored_ids), [s for s, _ in runs]
    last_stored: dict[int, int] = {}
    for ident, sent_ns in zip(stream.ids, stream.sent_ns):
        if ident in stored:
            last_stored[bisect.bisect_right(starts, sent_ns) - 1] = sent_ns
    for ident, sent_ns in zip(stream.ids, stream.sent_ns):
        if ident in stored:
            continue
        run = bisect.bisect_right(starts, sent_ns) - 1
        assert run < len(runs) - 1, f"trade {ident} missing from the clean run"
        assert sent_ns > last_stored.get(run, 0), f"trade {ident}: a hole, not a lost tail"
        assert (runs[run][1] - sent_ns) / 1e9 <= FLUSH + SLACK, f"trade {ident} lost long before a kill"
    assert len(stored) > 0.5 * len(stream.ids)


def test_sigkill_binanceus_kraken_coinbase(tmp_path):
    data = tmp_path / "data"

    async def body():
        sim = SimOptions(rate=30, trades_per_update=1.0, ticker_interval=0.5, seed=18)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            entries = [binance_entry(lx, SYMBOLS, "binanceus", book_depth=10),
                       exchange_entry(lx, "kraken", SYMBOLS, book_depth=10),
                       exchange_entry(lx, "coinbase", SYMBOLS, book_depth=10)]
            cfg = write_config(tmp_path / "config.yaml", data, entries, flush_interval=FLUSH, segment_max_seconds=1.0)
            with open(tmp_path / "collector.log", "ab") as log:
                runs = await kill_and_restart(lx, cfg, log, random.Random(1818))
            return lx.sent, runs

    sent, runs = asyncio.run(asyncio.wait_for(body(), 200))
    store = SegmentStore(data / "segments")
    assert store.list("active") == [] and store.list("failed") == []
    tables = ready_tables(data)
    for symbol in SYMBOLS:
        kraken_books = rows_of(tables["orderbook"], exchange="kraken", symbol=symbol)
        stream = sent.stream("kraken", symbol, "orderbook")
        assert kraken_books and {row_checksum(r, symbol) for r in kraken_books} <= set(stream.ids) | set(stream.snapshots)
        us_books = [r["nonce"] for r in rows_of(tables["orderbook"], exchange="binanceus", symbol=symbol)]
        us_stream = sent.stream("binanceus", symbol, "orderbook")
        assert us_books and len(us_books) == len(set(us_books))
        assert set(us_books) <= set(us_stream.ids) | set(us_stream.snapshots)
        coinbase_books = rows_of(tables["orderbook"], exchange="coinbase", symbol=symbol)
        assert coinbase_books and all(r["bid_px"][0] < r["ask_px"][0] for r in coinbase_books)
        for venue in ("kraken", "binanceus", "coinbase"):
            trades = [int(r["trade_id"]) for r in rows_of(tables["trades"], exchange=venue, symbol=symbol)]
            assert_trades_lose_only_tails(trades, sent.stream(venue, symbol, "trades"), runs)
