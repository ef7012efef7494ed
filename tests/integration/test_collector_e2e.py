"""End to end: the collector against the loopback exchange (Binance and OKX protocols at once),
several symbols, all channels.

What ready/ holds must be exactly what the exchange sent: every book update id
(from the first synced book on) in order, each book row's levels such that the
stored rows rebuild the exchange's own book at every update and full depth
(tests/integration/book_truth.py), every trade id once, every ticker.
"""
from __future__ import annotations

import asyncio

from book_truth import BookTruth, assert_bronze_rebuilds
from collector_support import drained, exchange_entry, make_config, ready_segments, ready_tables, rows_of, running_collector

from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"]
FULL_TICKERS = {"options": {"watchTickers": {"name": "ticker"}}}


def binance_entry(lx, symbols, name: str = "binance", **extra):
    """A Binance-protocol exchange entry (`name`: binance or binanceus)."""
    entry = exchange_entry(lx, name, symbols, **extra)
    entry["ccxt"]["options"].update(FULL_TICKERS["options"])
    entry["ccxt"]["enableRateLimit"] = False  # the loopback has no limits; our SnapshotGate still staggers
    return entry


def assert_stream_matches(tables, sent, exchange: str, protocol: str, symbols: list[str], truth: BookTruth,
                          uncrossed: bool = True):
    books, trades, tickers = tables["orderbook"], tables["trades"], tables["ticker"]
    for symbol in symbols:
        rows = rows_of(books, exchange=exchange, symbol=symbol)
        nonces = [r["nonce"] for r in rows]
        sent_ids = sent.stream(protocol, symbol, "orderbook").ids
        assert len(nonces) > 20, symbol
        assert nonces == sorted(set(nonces)), f"{symbol}: book nonces out of order or duplicated"
        # after the first synced book (whose nonce may be the REST snapshot's lastUpdateId),
        # every update id that was sent is there, in order
        start = sent_ids.index(nonces[1])
        assert nonces[1:] == sent_ids[start:], f"{symbol}: book updates missing"
        assert nonces[0] < nonces[1] and (start == 0 or sent_ids[start - 1] <= nonces[0])
        recv = [r["recv_ns"] for r in rows]
        assert recv == sorted(recv)
        for i, r in enumerate(rows):
            assert len(r["bid_px"]) == len(r["bid_sz"]) and len(r["ask_px"]) == len(r["ask_sz"])
            assert r["kind"] == ("snapshot" if i == 0 else "delta")
            # a REST snapshot carries no exchange time; every diff does
            assert (i == 0 and r["timestamp"] is None) or r["timestamp"] > 1_600_000_000_000
        snapshot = rows[0]
        assert snapshot["bid_px"] == sorted(snapshot["bid_px"], reverse=True) and snapshot["ask_px"] == sorted(
            snapshot["ask_px"])

        def not_crossed(book):
            assert not uncrossed or max(book.bids) < min(book.asks)
        # the stored prices and sizes are the exchange's book at every update, every level
        assert assert_bronze_rebuilds(rows, truth, exchange, protocol, symbol, not_crossed) == len(rows)
        stored_trades = [int(r["trade_id"]) for r in rows_of(trades, exchange=exchange, symbol=symbol)]
        assert stored_trades == sent.stream(protocol, symbol, "trades").ids, f"{symbol}: trades differ"
        tick = rows_of(tickers, exchange=exchange, symbol=symbol)
        assert len(tick) == sent.stream(protocol, symbol, "ticker").messages
        # a ticker is the exchange's top of book: while the book was crossed, so was the ticker
        assert all(t["bid"] is not None and (t["bid"] < t["ask"] or not uncrossed) for t in tick)


def test_every_sent_message_reaches_ready_in_order(tmp_path):
    async def body():
        sim = SimOptions(rate=25, trades_per_update=0.7, ticker_interval=0.5, seed=11)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            truth = BookTruth(lx)
            okx = exchange_entry(lx, "okx", SYMBOLS[:3], book_depth=20)
            cfg = make_config(tmp_path, [binance_entry(lx, SYMBOLS, book_depth=20), okx],
                              segment_max_seconds=1.5, max_concurrent_snapshots=1, snapshot_spacing=0.15)
            async with running_collector(cfg) as collector:
                await asyncio.sleep(6)
                lx.freeze()  # nothing more is sent; what was sent must all be flushed
                await drained(lx, collector)
                gate = collector.gate
            tables = ready_tables(tmp_path)
            assert_stream_matches(tables, lx.sent, "binance", "binance", SYMBOLS, truth)
            assert_stream_matches(tables, lx.sent, "okx", "okx", SYMBOLS[:3], truth)
            assert len(ready_segments(tmp_path)) >= 3  # rotation by age happened
            # REST snapshots (Binance; OKX sends its own over the socket) were staggered
            assert gate.max_in_flight == 1 and gate.started >= len(SYMBOLS)
            starts = gate.start_times
            assert all(b - a >= 0.14 for a, b in zip(starts, starts[1:]))
            resyncs = rows_of(tables["events"], event="resync")
            assert {(r["exchange"], r["symbol"]) for r in resyncs} == (
                {("binance", s) for s in SYMBOLS} | {("okx", s) for s in SYMBOLS[:3]})
            assert not rows_of(tables["events"], event="dropped")

    asyncio.run(asyncio.wait_for(body(), 90))


def test_several_binance_tickers_carry_bid_and_ask_without_ccxt_options(tmp_path):
    """ccxt's watchTickers (several symbols in one call) defaults to @miniTicker on Binance, which
    has no bid/ask; the collector asks for the full @ticker, as one symbol's watchTicker does
    (collector/ticker_stream.py), unless the config names a stream itself."""
    async def body():
        sim = SimOptions(rate=5, trades_per_update=0.2, ticker_interval=0.3, seed=17)
        async with LoopbackExchange("sim", SYMBOLS[:2], sim=sim) as lx:
            plain = exchange_entry(lx, "binance", SYMBOLS[:2], channels=["ticker"])
            chosen = exchange_entry(lx, "binanceus", SYMBOLS[:2], channels=["ticker"])
            chosen["ccxt"]["options"]["watchTickers"] = {"name": "miniTicker"}
            cfg = make_config(tmp_path, [plain, chosen], segment_max_seconds=1.0)
            async with running_collector(cfg) as collector:
                await asyncio.sleep(3)
                lx.freeze()
                await drained(lx, collector)
            tickers = ready_tables(tmp_path)["ticker"]
            for symbol in SYMBOLS[:2]:
                full = rows_of(tickers, exchange="binance", symbol=symbol)
                assert len(full) == lx.sent.stream("binance", symbol, "ticker").messages > 3
                assert all(t["bid"] is not None and t["ask"] is not None and t["bid"] < t["ask"] for t in full)
                mini = rows_of(tickers, exchange="binanceus", symbol=symbol)
                assert mini and all(t["bid"] is None and t["ask"] is None and t["last"] for t in mini)

    asyncio.run(asyncio.wait_for(body(), 60))


def test_failures_stay_local(tmp_path):
    """An unknown symbol and an unreachable exchange are recorded; everything else is collected."""
    async def body():
        async with LoopbackExchange("sim", SYMBOLS[:2], sim=SimOptions(rate=20, seed=12)) as lx:
            dead = exchange_entry(lx, "okx", ["BTC/USDT"])
            dead["ccxt"] = {"urls": {"api": {"rest": "http://127.0.0.1:9", "ws": "ws://127.0.0.1:9/ws"}},
                            "timeout": 2000}
            good = binance_entry(lx, SYMBOLS[:2] + ["NOPE/USDT"])
            cfg = make_config(tmp_path, [good, dead])
            async with running_collector(cfg) as col:
                await asyncio.sleep(4)
                assert col.recorder.symbols_up("binance", SYMBOLS[:2], 2.0) == 2
        tables = ready_tables(tmp_path)
        errors = rows_of(tables["events"], event="error")
        assert any(e["exchange"] == "binance" and e["symbol"] == "NOPE/USDT" and "unknown symbol" in e["reason"]
                   for e in errors)
        assert sum(e["exchange"] == "okx" and "load_markets" in e["reason"] for e in errors) >= 2  # retried
        for s in SYMBOLS[:2]:
            assert len(rows_of(tables["orderbook"], exchange="binance", symbol=s)) > 20
            assert rows_of(tables["trades"], exchange="binance", symbol=s)

    asyncio.run(asyncio.wait_for(body(), 60))
