"""Bronze order books are lossless: real captures -> loopback (Binance + OKX) -> unmodified ccxt -> collector.

From the bronze rows alone, the independent rebuild (tests/reference/exchange_book.py:
snapshot + every diff, no trimming, Binance's U/u rule, OKX's seqId/prevSeqId and
CRC32 per message) equals the loopback exchange's own book at every update and
at full depth.  ccxt trims its own Binance book to `watchOrderBookLimit` (1000
levels, which the real BTCUSDT capture moves through: a copy of ccxt's book has
holes there) and its OKX book to 400: bronze must not depend on either.
"""
from __future__ import annotations

import asyncio

import pytest
from book_truth import BookTruth, assert_bronze_rebuilds
from collector_support import exchange_entry, make_config, ready_tables, rows_of, running_collector, wait_until

from fluxforge.loopback import LoopbackExchange

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


async def collect_replay(tmp_path, files):
    lx = LoopbackExchange("replay", replay_files=files, speed=0)
    lx.freeze()  # hold the replay until the collector has its snapshots
    async with lx:
        truth = BookTruth(lx)
        entries = [exchange_entry(lx, name, SYMBOLS, channels=["orderbook"]) for name in ("binance", "okx")]
        for entry in entries:
            entry["ccxt"]["enableRateLimit"] = False
        # one loop runs the loopback and the collector: a replay as fast as possible starves the
        # socket readers for seconds at a time, which is not a stalled exchange
        cfg = make_config(tmp_path, entries, segment_max_seconds=5.0, stall_timeout=120.0)
        async with running_collector(cfg) as collector:
            await wait_until(lambda: all(("binance", s) in collector.recorder._book_ids
                                         and ("okx", s) in collector.recorder._book_ids for s in SYMBOLS),
                             timeout=30, what="both books synced")
            lx.freeze(False)
            await wait_until(lambda: lx.source.finished, timeout=120, what="replay to finish")
            last = {s: lx.source.books[s].last_update_id for s in SYMBOLS}
            await wait_until(lambda: all(collector.recorder.last_nonce.get((ex, s)) == last[s]
                                         for ex in ("binance", "okx") for s in SYMBOLS),
                             timeout=60, what="the last update recorded")
        truth.verify()
    return lx, truth, ready_tables(tmp_path)


@pytest.mark.realdata
@pytest.mark.slow
def test_real_captures_rebuild_exactly_at_every_update(tmp_path, shared_capture):
    files = [shared_capture / "btcusdt_20240808.gz", shared_capture / "ethusdt_20240808.gz"]
    lx, truth, tables = asyncio.run(asyncio.wait_for(collect_replay(tmp_path, files), 240))
    assert not rows_of(tables["events"], event="gap") and not rows_of(tables["events"], event="dropped")
    for exchange in ("binance", "okx"):
        for symbol in SYMBOLS:
            rows = rows_of(tables["orderbook"], exchange=exchange, symbol=symbol)
            sent = lx.sent.stream(exchange, symbol, "orderbook")
            # one row per message ccxt applied: the snapshot, then every update id sent after it
            assert [r["nonce"] for r in rows[1:]] == sent.ids[sent.ids.index(rows[1]["nonce"]):]
            assert len(rows) > 3000
            assert assert_bronze_rebuilds(rows, truth, exchange, exchange, symbol) == len(rows)
            deepest = max(len(r["bid_px"]) for r in rows if r["kind"] == "snapshot")
            assert deepest == (1000 if exchange == "binance" else 400)  # the depth the exchange gave
