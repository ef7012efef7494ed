"""Every loopback fault: what the collector recorded about it, and that it recovered.

Each case: collect for a moment, inject one fault, wait until book rows flow
again, freeze the market, stop, and inspect ready/.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from collector_support import drained, exchange_entry, make_config, ready_tables, rows_of, running_collector, wait_until
from book_truth import BookTruth, assert_bronze_rebuilds
from test_collector_e2e import assert_stream_matches, binance_entry

from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
CHANNELS = ("orderbook", "trades", "ticker")


async def inject(lx, kind: str):
    if kind == "gap":
        lx.faults.gap("BTC/USDT")
    elif kind == "crossed":
        lx.faults.crossed("ETH/USDT")
    elif kind == "malformed":
        assert lx.faults.malformed() >= 1
    elif kind == "disconnect":
        assert await lx.faults.disconnect() >= 1
    elif kind == "abrupt_disconnect":
        assert await lx.faults.disconnect(abrupt=True) >= 1
    elif kind == "stall":
        assert lx.faults.stall() >= 1  # until resume; new connections are served
    elif kind == "slow":
        lx.faults.slow(delay=0.03, seconds=3.0)


def after(rows, t_ns):
    return [r for r in rows if r["recv_ns"] > t_ns]


CASES = [("binance", k) for k in ["gap", "crossed", "malformed", "disconnect", "abrupt_disconnect", "stall", "slow"]]
CASES += [("okx", k) for k in ["gap", "malformed", "disconnect"]]
CASES += [("binanceus", k) for k in ["gap", "malformed", "disconnect"]]


@pytest.mark.parametrize("ex,kind", CASES)
def test_fault_is_recorded_and_collection_recovers(tmp_path, ex, kind):
    async def body():
        sim = SimOptions(rate=20, trades_per_update=0.5, ticker_interval=0.5, seed=hash(kind) % 1000)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            truth = BookTruth(lx)
            entry = (binance_entry(lx, SYMBOLS, ex, book_depth=10) if ex.startswith("binance")
                     else exchange_entry(lx, ex, SYMBOLS, book_depth=10))
            cfg = make_config(tmp_path, [entry], stall_timeout=1.5)
            async with running_collector(cfg) as collector:
                rec = collector.recorder
                await wait_until(lambda: all(((ex, "orderbook", s) in rec.last_seen) for s in SYMBOLS),
                                 20, what="books of every symbol")
                await asyncio.sleep(0.5)
                t_fault = time.time_ns()
                await inject(lx, kind)
                mark = time.monotonic_ns()  # the clock of last_seen
                # recovered = every symbol's book updated again well after the fault
                await wait_until(lambda: all(rec.last_seen.get((ex, "orderbook", s), 0) > mark + 500_000_000
                                             for s in SYMBOLS), 30, what=f"books flowing again after {kind}")
                if kind == "slow":
                    await asyncio.sleep(3.0)  # let the slow period end and drain
                lx.freeze()
                await drained(lx, collector)  # every frame sent was handled before the stop
            tables = ready_tables(tmp_path)
            ev = after(tables["events"].to_pylist(), t_fault)
            books = tables["orderbook"]
            for s in SYMBOLS:  # collection recovered for every symbol
                assert after(rows_of(books, symbol=s), t_fault + 500_000_000), (s, ev)
            kinds = [e["event"] for e in ev]
            if kind == "gap":
                gaps = [e for e in ev if e["event"] == "gap"]
                assert [g["symbol"] for g in gaps] == ["BTC/USDT"], (ev, lx.sent.faults)
                assert ("ChecksumError" if ex.startswith("binance") else "InvalidNonce") in gaps[0]["reason"]
                resync = [e for e in ev if e["event"] == "resync" and e["symbol"] == "BTC/USDT"]
                assert resync and resync[0]["recv_ns"] > gaps[0]["recv_ns"], ev
                dropped = lx.sent.stream(ex, "BTC/USDT", "orderbook").dropped
                nonces = {r["nonce"] for r in rows_of(books, symbol="BTC/USDT")}
                assert dropped and not any(a <= n <= b for a, b in dropped for n in nonces)
                stream = lx.sent.stream(ex, "BTC/USDT", "orderbook")
                assert nonces <= set(stream.ids) | set(stream.snapshots)  # nothing invented
                # the rows before the gap and from the new snapshot on rebuild the exchange's book
                assert_bronze_rebuilds(rows_of(books, symbol="BTC/USDT"), truth, ex, ex, "BTC/USDT")
            elif kind == "crossed":
                crossed = [e for e in ev if e["event"] == "crossed_book"]
                assert [c["symbol"] for c in crossed] == ["ETH/USDT"] and "best bid" in crossed[0]["reason"]
                seen = []  # (recv_ns, crossed?) of the rebuilt ETH book after each row
                rows = rows_of(books, symbol="ETH/USDT")
                assert_bronze_rebuilds(rows, truth, ex, ex, "ETH/USDT",
                                       lambda b: seen.append(max(b.bids) >= min(b.asks)))
                crossed_after = [c for r, c in zip(rows, seen) if r["recv_ns"] > t_fault]
                assert any(crossed_after)   # kept: bronze loses nothing
                assert not seen[-1]          # and the book uncrossed
                assert_stream_matches(tables, lx.sent, ex, ex, SYMBOLS, truth, uncrossed=False)
            elif kind == "malformed":
                errors = [e for e in ev if e["event"] == "error"]
                assert errors and "unhandled frame" in errors[0]["reason"]
                assert "reconnect" not in kinds  # the connection survived the bad frame
                assert_stream_matches(tables, lx.sent, ex, ex, SYMBOLS, truth)
            elif kind in ("disconnect", "abrupt_disconnect"):
                reconnects = {(e["symbol"], e["channel"]) for e in ev if e["event"] == "reconnect"}
                assert reconnects >= {(s, ch) for s in SYMBOLS for ch in CHANNELS}
                assert {e["symbol"] for e in ev if e["event"] == "resync"} == set(SYMBOLS)
            elif kind == "stall":
                stalls = {(e["symbol"], e["channel"]) for e in ev if e["event"] == "stall"}
                assert stalls == {(s, ch) for s in SYMBOLS for ch in CHANNELS}
                # only after stall_timeout of silence on that connection: its last frame was received
                # no earlier than the loopback logged sending it (same event loop), and ccxt keeps
                # the receive time in whole ms.  t_fault is no reference: on a starved box the loop
                # may have sent nothing for a while before the fault began.  (The sent-log times
                # frames with ids, books and trades; every ticker stream's stall is asserted above.)
                for e in (e for e in ev if e["event"] == "stall" and e["channel"] != "ticker"):
                    sent_before = [t for t in lx.sent.stream(ex, e["symbol"], e["channel"]).sent_ns
                                   if t < e["recv_ns"]]
                    assert sent_before, e
                    assert e["recv_ns"] - max(sent_before) >= 1.5e9 - 1e6, (e, max(sent_before))
                assert any(e["event"] == "reconnect" and "stall" in e["reason"] for e in ev)
            elif kind == "slow":
                assert not {"reconnect", "gap", "stall", "dropped"} & set(kinds)
                assert_stream_matches(tables, lx.sent, ex, ex, SYMBOLS, truth)

    asyncio.run(asyncio.wait_for(body(), 90))
