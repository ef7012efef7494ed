"""End to end: the collector against the loopback's Binance US (`binanceus`), beside Binance itself.

Binance US is Binance's protocol at its own URLs; both venues run on one loopback
at once, so a row filed under the wrong exchange, or a request that went to the
wrong venue's URLs, shows up as a mismatch against that venue's sent-log.
"""
from __future__ import annotations

import asyncio

from book_truth import BookTruth
from collector_support import drained, make_config, ready_tables, rows_of, running_collector
from test_collector_e2e import assert_stream_matches, binance_entry

from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def test_binanceus_every_sent_message_reaches_ready_in_order(tmp_path):
    async def body():
        sim = SimOptions(rate=25, trades_per_update=0.7, ticker_interval=0.5, seed=18)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            truth = BookTruth(lx, protocols=("binance",))  # Binance US serves the same books
            us = binance_entry(lx, SYMBOLS, "binanceus", book_depth=20)
            assert "/us/" in us["ccxt"]["urls"]["api"]["public"] and us["ccxt"]["urls"]["api"]["ws"]["spot"].endswith("/us/ws")
            cfg = make_config(tmp_path, [binance_entry(lx, SYMBOLS[:2], book_depth=20), us], segment_max_seconds=1.5)
            async with running_collector(cfg) as col:
                await asyncio.sleep(5)
                lx.freeze()
                await drained(lx, col)  # everything sent was handled
            tables = ready_tables(tmp_path)
            assert_stream_matches(tables, lx.sent, "binanceus", "binanceus", SYMBOLS, truth)
            assert_stream_matches(tables, lx.sent, "binance", "binance", SYMBOLS[:2], truth)
            # each venue fetched its own REST snapshots, over its own URLs
            for s in SYMBOLS:
                assert lx.sent.stream("binanceus", s, "orderbook").snapshots
            assert not lx.sent.stream("binance", "SOL/USDT", "orderbook").snapshots
            resyncs = {(r["exchange"], r["symbol"]) for r in rows_of(tables["events"], event="resync")}
            assert resyncs == {("binanceus", s) for s in SYMBOLS} | {("binance", s) for s in SYMBOLS[:2]}

    asyncio.run(asyncio.wait_for(body(), 90))
