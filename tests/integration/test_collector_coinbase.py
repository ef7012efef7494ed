"""The collector against the loopback's Coinbase Advanced Trade, with unmodified ccxt.pro `coinbase`.

Coinbase's book has no ids: each stored book row must be one `l2_data` message
(the first the snapshot), and once the market is frozen the last stored book of
every symbol must be the exchange's book.  A lost message (gap fault) shows only
as a jump in `sequence_num`, which ccxt never reads: the collector must record a
`gap` and resync, and the final books must again be right.
"""
from __future__ import annotations

import asyncio
import time

import pytest
import pyarrow.parquet as pq
from collector_support import (books_across_a_reconnect, exchange_entry, make_config, ready_segments, ready_tables,
                               rows_of, running_collector, wait_until)

from fluxforge.etl.replay import replay
from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT", "XRP/USDT"]
DEPTH = 10


def assert_final_books_match(tables, lx, symbols):
    for symbol in symbols:
        last = rows_of(tables["orderbook"], exchange="coinbase", symbol=symbol)[-1]
        _, bids, asks = lx.source.books[symbol].snapshot(DEPTH)
        assert last["bid_px"] == [float(p) for p, _ in bids] and last["bid_sz"] == [float(q) for _, q in bids], symbol
        assert last["ask_px"] == [float(p) for p, _ in asks] and last["ask_sz"] == [float(q) for _, q in asks], symbol


def assert_book_keys_as_sent(rows, stream, symbol):
    """Each book row's order key is its message's `sequence_num` and its time the message's timestamp, in order."""
    assert [(r["nonce"], r["timestamp"]) for r in rows] == stream.values, f"{symbol}: nonce/timestamp differ from sent"
    assert all(r["prev_nonce"] is None for r in rows)  # an order key, not a chain


def assert_coinbase_stream_matches(tables, lx, symbols, min_rows: int = 20):
    sent = lx.sent
    for symbol in symbols:
        rows = rows_of(tables["orderbook"], exchange="coinbase", symbol=symbol)
        stream = sent.stream("coinbase", symbol, "orderbook")
        assert len(rows) > min_rows and len(stream.snapshots) == 1, symbol
        assert len(rows) == 1 + stream.messages, f"{symbol}: {len(rows)} rows for 1 snapshot + {stream.messages} updates"
        assert_book_keys_as_sent(rows, stream, symbol)
        assert all(r["bid_px"][0] < r["ask_px"][0] for r in rows)
        stored_trades = [int(r["trade_id"]) for r in rows_of(tables["trades"], exchange="coinbase", symbol=symbol)]
        assert stored_trades == sent.stream("coinbase", symbol, "trades").ids, f"{symbol}: trades differ"
        tick = rows_of(tables["ticker"], exchange="coinbase", symbol=symbol)
        assert len(tick) == sent.stream("coinbase", symbol, "ticker").messages > 0
        assert all(t["bid"] < t["ask"] for t in tick)
    assert_final_books_match(tables, lx, symbols)


def test_coinbase_every_sent_message_reaches_ready(tmp_path):
    async def body():
        sim = SimOptions(rate=25, trades_per_update=0.7, ticker_interval=0.5, seed=31)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            cfg = make_config(tmp_path, [exchange_entry(lx, "coinbase", SYMBOLS, book_depth=DEPTH)],
                              segment_max_seconds=1.5)
            async with running_collector(cfg):
                await asyncio.sleep(5)
                lx.freeze()
                await asyncio.sleep(1.0)
            tables = ready_tables(tmp_path)
            assert_coinbase_stream_matches(tables, lx, SYMBOLS)
            assert not rows_of(tables["events"], event="gap") and not rows_of(tables["events"], event="error")
            assert {r["symbol"] for r in rows_of(tables["events"], event="resync")} == set(SYMBOLS)

    asyncio.run(asyncio.wait_for(body(), 90))


@pytest.mark.parametrize("kind", ["gap", "stall", "malformed", "disconnect"])
def test_coinbase_fault_is_recorded_and_collection_recovers(tmp_path, kind):
    async def body():
        sim = SimOptions(rate=20, trades_per_update=0.5, ticker_interval=0.5, seed=32)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            cfg = make_config(tmp_path, [exchange_entry(lx, "coinbase", SYMBOLS, book_depth=DEPTH)],
                              stall_timeout=1.5)
            async with running_collector(cfg) as collector:
                rec = collector.recorder
                await wait_until(lambda: all(("coinbase", ch, s) in rec.last_seen for s in SYMBOLS
                                             for ch in ("orderbook", "trades", "ticker")),
                                 20, what="every channel of every symbol")
                t_fault = time.time_ns()
                if kind == "gap":
                    lx.faults.gap("BTC/USDT")
                elif kind == "stall":  # frames are lost for 0.4 s, then the socket talks again
                    assert lx.faults.stall(seconds=0.4, protocol="coinbase") >= 1
                elif kind == "malformed":
                    assert lx.faults.malformed(protocol="coinbase") >= 1
                else:
                    assert await lx.faults.disconnect(protocol="coinbase") >= 1
                mark = time.monotonic_ns()  # the clock of last_seen
                await wait_until(lambda: all(rec.last_seen.get(("coinbase", "orderbook", s), 0) > mark + 500_000_000
                                             for s in SYMBOLS), 30, what=f"books flowing again after {kind}")
                lx.freeze()
                await asyncio.sleep(1.0)
            tables = ready_tables(tmp_path)
            ev = [e for e in tables["events"].to_pylist() if e["recv_ns"] > t_fault]
            kinds = [e["event"] for e in ev]
            if kind in ("gap", "stall"):
                gaps = [e for e in ev if e["event"] == "gap"]
                # the lost message's channel is unknown: every book of the connection resyncs
                assert {g["symbol"] for g in gaps} == set(SYMBOLS) and "sequence_num" in gaps[0]["reason"], ev
                first_gap = min(g["recv_ns"] for g in gaps)
                assert {e["symbol"] for e in ev if e["event"] == "resync" and e["recv_ns"] > first_gap} == set(SYMBOLS)
                assert "reconnect" not in kinds
            elif kind == "malformed":
                errors = [e for e in ev if e["event"] == "error"]
                assert errors and "unhandled frame" in errors[0]["reason"] and "reconnect" not in kinds
                assert_coinbase_stream_matches(tables, lx, SYMBOLS, min_rows=5)
            else:
                reconnects = {(e["symbol"], e["channel"]) for e in ev if e["event"] == "reconnect"}
                assert reconnects >= {(s, ch) for s in SYMBOLS for ch in ("orderbook", "trades", "ticker")}
            assert_final_books_match(tables, lx, SYMBOLS)

    asyncio.run(asyncio.wait_for(body(), 90))


def test_coinbase_book_rows_carry_sequence_num_and_time_across_a_reconnect(tmp_path):
    """`nonce` = the message's `sequence_num`, `timestamp` = its exchange time, for every book row; after a
    reconnect the new connection counts from 0 again, behind a reconnect event and a snapshot row."""
    async def body():
        sim = SimOptions(rate=25, trades_per_update=0.7, ticker_interval=0.5, seed=33)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            cfg = make_config(tmp_path, [exchange_entry(lx, "coinbase", SYMBOLS, book_depth=DEPTH)])
            async with running_collector(cfg) as collector:
                streams = await books_across_a_reconnect(lx, collector, "coinbase", SYMBOLS)
            tables = ready_tables(tmp_path)
            reconnects = [e for e in rows_of(tables["events"], event="reconnect", channel="orderbook")]
            assert {e["symbol"] for e in reconnects} == set(SYMBOLS)
            for symbol, stream in zip(SYMBOLS, streams):
                rows = rows_of(tables["orderbook"], exchange="coinbase", symbol=symbol)
                assert_book_keys_as_sent(rows, stream, symbol)
                nonces = [r["nonce"] for r in rows]
                restart = next(i for i in range(1, len(nonces)) if nonces[i] < nonces[i - 1])
                # increasing within a connection (with holes: other channels' messages), restarting on the next
                assert nonces[:restart] == sorted(set(nonces[:restart])) and nonces[restart:] == sorted(set(nonces[restart:]))
                assert any(b - a > 1 for a, b in zip(nonces, nonces[1:restart]))
                assert any(rows[restart - 1]["recv_ns"] < e["recv_ns"] < rows[restart]["recv_ns"]
                           for e in reconnects if e["symbol"] == symbol)
                assert all(r["timestamp"] > 1_600_000_000_000 for r in rows)
            # the ETL takes the restarted numbers as they are: nothing skipped or dropped as late; the hf rows
            # (sampled, so not every row) carry bronze's nonces
            out = tmp_path / "features"
            summary = replay(ready_segments(tmp_path), out, cfg.etl.features, cfg.etl.row_group_rows, reorder_window=0.0)
            assert not summary.skipped and not any(r.late_dropped for r in summary.done)
            for symbol in SYMBOLS:
                hf = pq.read_table(out / "hf" / "exchange=coinbase" / f"symbol={symbol.replace('/', '-')}")
                emitted = set(hf.column("nonce").to_pylist())
                assert emitted and emitted <= {r["nonce"] for r in rows_of(tables["orderbook"], symbol=symbol)}, symbol

    asyncio.run(asyncio.wait_for(body(), 90))
