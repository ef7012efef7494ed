"""The collector against the loopback's Kraken WebSocket v2, with unmodified ccxt.pro `kraken`.

Kraken's book has no update ids, so the loopback logs each book message by its
CRC32 checksum: every stored book row must give, recomputed from its own levels,
exactly the checksums that were sent, in order (the first row: the snapshot's).
Faults: a withheld diff must become a `gap` (the collector checks the checksum
ccxt leaves unchecked) followed by a fresh snapshot; malformed frames and
disconnects are survived.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from collector_support import (books_across_a_reconnect, exchange_entry, make_config, ready_tables, rows_of,
                               running_collector, wait_until)

from fluxforge.collector.kraken_checksum import book_checksum
from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT", "XRP/USDT"]
PRICE_PLACES = {"BTC/USDT": 2, "ETH/USDT": 2, "XRP/USDT": 4}  # the simulator's ticks


def row_checksum(row: dict, symbol: str) -> int:
    book = {"bids": list(zip(row["bid_px"], row["bid_sz"])), "asks": list(zip(row["ask_px"], row["ask_sz"]))}
    return book_checksum(book, PRICE_PLACES[symbol], 8)


def assert_book_keys_as_sent(rows, stream, symbol):
    """Kraken v2 has no order key: `nonce` null; `timestamp` the update's time (a snapshot has none), in order."""
    assert [(r["nonce"], r["timestamp"]) for r in rows] == stream.values, f"{symbol}: nonce/timestamp differ from sent"
    assert rows[0]["timestamp"] is None and all(r["timestamp"] > 1_600_000_000_000 for r in rows[1:])


def assert_kraken_stream_matches(tables, sent, symbols, min_rows: int = 20):
    for symbol in symbols:
        rows = rows_of(tables["orderbook"], exchange="kraken", symbol=symbol)
        stream = sent.stream("kraken", symbol, "orderbook")
        assert len(rows) > min_rows and len(stream.snapshots) == 1, symbol
        assert all(len(r["bid_px"]) == len(r["ask_px"]) == 10 for r in rows)
        assert [row_checksum(r, symbol) for r in rows] == stream.snapshots + stream.ids, f"{symbol}: books differ"
        assert_book_keys_as_sent(rows, stream, symbol)
        stored_trades = [int(r["trade_id"]) for r in rows_of(tables["trades"], exchange="kraken", symbol=symbol)]
        assert stored_trades == sent.stream("kraken", symbol, "trades").ids, f"{symbol}: trades differ"
        tick = rows_of(tables["ticker"], exchange="kraken", symbol=symbol)
        assert len(tick) == sent.stream("kraken", symbol, "ticker").messages > 0
        assert all(t["bid"] < t["ask"] for t in tick)


def test_kraken_every_sent_message_reaches_ready_in_order(tmp_path):
    async def body():
        sim = SimOptions(rate=25, trades_per_update=0.7, ticker_interval=0.5, seed=21)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            cfg = make_config(tmp_path, [exchange_entry(lx, "kraken", SYMBOLS, book_depth=10)], segment_max_seconds=1.5)
            async with running_collector(cfg):
                await asyncio.sleep(5)
                lx.freeze()
                await asyncio.sleep(1.0)
            tables = ready_tables(tmp_path)
            assert_kraken_stream_matches(tables, lx.sent, SYMBOLS)
            assert not rows_of(tables["events"], event="gap") and not rows_of(tables["events"], event="error")
            assert {r["symbol"] for r in rows_of(tables["events"], event="resync")} == set(SYMBOLS)

    asyncio.run(asyncio.wait_for(body(), 90))


async def arm_noticed_gap(lx, rec, symbol: str) -> None:
    """Withhold one diff of `symbol`; again if the loopback says the client could not notice that one."""
    for _ in range(20):
        unnoticed = sum(f["kind"] == "gap_unnoticed" for f in lx.sent.faults)
        lx.faults.gap(symbol)
        await wait_until(lambda: lx.sent.stream("kraken", symbol, "orderbook").dropped and (
            rec.event_counts["gap"] or sum(f["kind"] == "gap_unnoticed" for f in lx.sent.faults) > unnoticed),
            10, what="the withheld diff noticed or reported unnoticeable")
        if rec.event_counts["gap"]:
            return
    raise AssertionError("no noticeable gap in 20 tries")


@pytest.mark.parametrize("kind", ["gap", "malformed", "disconnect"])
def test_kraken_fault_is_recorded_and_collection_recovers(tmp_path, kind):
    async def body():
        sim = SimOptions(rate=20, trades_per_update=0.5, ticker_interval=0.5, seed=22)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            cfg = make_config(tmp_path, [exchange_entry(lx, "kraken", SYMBOLS, book_depth=10)], stall_timeout=1.5)
            async with running_collector(cfg) as collector:
                rec = collector.recorder
                await wait_until(lambda: all(("kraken", ch, s) in rec.last_seen for s in SYMBOLS
                                             for ch in ("orderbook", "trades", "ticker")),
                                 20, what="every channel of every symbol")
                t_fault = time.time_ns()
                if kind == "gap":
                    await arm_noticed_gap(lx, rec, "BTC/USDT")
                elif kind == "malformed":
                    assert lx.faults.malformed(protocol="kraken") >= 1
                else:
                    assert await lx.faults.disconnect(protocol="kraken") >= 1
                mark = time.monotonic_ns()  # the clock of last_seen
                await wait_until(lambda: all(rec.last_seen.get(("kraken", "orderbook", s), 0) > mark + 500_000_000
                                             for s in SYMBOLS), 30, what=f"books flowing again after {kind}")
                lx.freeze()
                await asyncio.sleep(0.8)
            tables = ready_tables(tmp_path)
            ev = [e for e in tables["events"].to_pylist() if e["recv_ns"] > t_fault]
            kinds = [e["event"] for e in ev]
            if kind == "gap":
                gaps = [e for e in ev if e["event"] == "gap"]
                assert [g["symbol"] for g in gaps] == ["BTC/USDT"] and "ChecksumError" in gaps[0]["reason"], ev
                resync = [e for e in ev if e["event"] == "resync" and e["symbol"] == "BTC/USDT"]
                assert resync and resync[0]["recv_ns"] > gaps[0]["recv_ns"], ev
                # no stored row holds the wrong book: every row's checksum is one the exchange sent
                stream = lx.sent.stream("kraken", "BTC/USDT", "orderbook")
                rows = rows_of(tables["orderbook"], exchange="kraken", symbol="BTC/USDT")
                assert {row_checksum(r, "BTC/USDT") for r in rows} <= set(stream.ids) | set(stream.snapshots)
                assert len(stream.snapshots) >= 2
            elif kind == "malformed":
                errors = [e for e in ev if e["event"] == "error"]
                assert errors and "unhandled frame" in errors[0]["reason"] and "reconnect" not in kinds
                assert_kraken_stream_matches(tables, lx.sent, SYMBOLS, min_rows=5)
            else:
                reconnects = {(e["symbol"], e["channel"]) for e in ev if e["event"] == "reconnect"}
                assert reconnects >= {(s, ch) for s in SYMBOLS for ch in ("orderbook", "trades", "ticker")}
            for s in SYMBOLS:
                assert [r for r in rows_of(tables["orderbook"], symbol=s) if r["recv_ns"] > mark], s

    asyncio.run(asyncio.wait_for(body(), 90))


def test_kraken_book_rows_carry_the_update_time_across_a_reconnect(tmp_path):
    """Every book row's `timestamp` is its message's exchange time (null on a snapshot, which has none) and
    `nonce` is null (Kraken v2 sends no order key), in send order, on both sides of a reconnect."""
    async def body():
        sim = SimOptions(rate=25, trades_per_update=0.5, ticker_interval=0.5, seed=23)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            cfg = make_config(tmp_path, [exchange_entry(lx, "kraken", SYMBOLS, book_depth=10)])
            async with running_collector(cfg) as collector:
                streams = await books_across_a_reconnect(lx, collector, "kraken", SYMBOLS)
            tables = ready_tables(tmp_path)
            for symbol, stream in zip(SYMBOLS, streams):
                rows = rows_of(tables["orderbook"], exchange="kraken", symbol=symbol)
                assert [(r["nonce"], r["timestamp"]) for r in rows] == stream.values, symbol
                snapshots = [i for i, r in enumerate(rows) if r["timestamp"] is None]
                assert len(snapshots) == 2 and snapshots[0] == 0 and all(r["nonce"] is None for r in rows)
                # the rows are those messages: their checksums, recomputed, are the ones sent, in the same order
                cut = snapshots[1]
                assert [row_checksum(r, symbol) for r in rows] == (
                    stream.snapshots[:1] + stream.ids[:cut - 1] + stream.snapshots[1:] + stream.ids[cut - 1:]), symbol

    asyncio.run(asyncio.wait_for(body(), 90))
