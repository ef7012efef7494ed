"""`book_stream: partial` end to end: the loopback's Binance (and Binance US) partial depth
streams and OKX `books5` -> unmodified ccxt.pro (Binance through the collector's
`BinancePartialBooks`) -> bronze snapshot rows -> the ETL.

Every bronze book row must be a `snapshot` equal to the top-N book the loopback sent in that
frame (its id in the sent-log, its levels those of the loopback's book at that id, taken here
from the hub independently of the protocol code), in send order, with nothing missing or
invented; no REST depth request and no diff subscription; one `resync` per stream start, not
per row (a `resync` restarts the ETL's features).  The ETL then turns the rows into features:
its rebuilt book at the last message it reached is exactly that row's top N, so each row
replaced the book (a snapshot merged into the previous book would keep levels beyond N).
"""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pyarrow.compute as pc
import pytest
import pyarrow.dataset as ds
from collector_support import drained, exchange_entry, make_config, ready_tables, rows_of, running_collector, wait_until
from test_collector_e2e import binance_entry
from test_loopback_partial_depth import TopBooks

from fluxforge.config import DEFAULT_MAX_GAP_MS, FeatureOptions
from fluxforge.etl.checkpoint import CheckpointStore
from fluxforge.etl.runner import EtlRunner
from fluxforge.features.engine import FeatureEngine
from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
DEPTH = 5  # below the ETL's max_levels (10): levels beyond N left over from an earlier row would show


def levels(row: dict, side: str) -> list[list[float]]:
    return [[p, q] for p, q in zip(row[f"{side}_px"], row[f"{side}_sz"])]


def as_floats(side: list) -> list[list[float]]:
    return [[float(p), float(q)] for p, q in side]


def partial_entry(lx, exchange: str) -> dict:
    if exchange.startswith("binance"):  # binance, binanceus (Binance's protocol at its own URLs)
        return binance_entry(lx, SYMBOLS, exchange, book_stream="partial", partial_depth=DEPTH)
    entry = exchange_entry(lx, exchange, SYMBOLS, book_stream="partial", partial_depth=DEPTH)
    entry["ccxt"]["enableRateLimit"] = False
    return entry


@pytest.mark.parametrize("exchange", ["binance", "binanceus", "okx"])
def test_partial_stream_rows_are_the_sent_top_n_snapshots_and_become_features(tmp_path, exchange):
    async def body():
        sim = SimOptions(rate=25, trades_per_update=0.7, ticker_interval=0.5, seed=18)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            top = TopBooks(lx, DEPTH)
            entry = partial_entry(lx, exchange)
            # stall_timeout: a loaded machine must not fail a live connection (frames in flight would be lost)
            cfg = make_config(tmp_path, [entry], segment_max_seconds=1.5, stall_timeout=60.0)
            async with running_collector(cfg) as col:
                await wait_until(lambda: all(len(lx.sent.stream(exchange, s, "orderbook").snapshots) >= 80
                                             for s in SYMBOLS), timeout=60, what="80 partial frames per symbol")
                lx.freeze()
                await drained(lx, col)  # everything sent was handled
            return lx, top, ready_tables(tmp_path)

    lx, top, tables = asyncio.run(asyncio.wait_for(body(), 120))
    events = tables["events"]
    assert not rows_of(events, event="gap") and not rows_of(events, event="dropped")
    assert lx.sent.snapshots == sum(len(lx.sent.stream(exchange, s, "orderbook").snapshots) for s in SYMBOLS)
    for symbol in SYMBOLS:
        rows = rows_of(tables["orderbook"], exchange=exchange, symbol=symbol)
        sent = lx.sent.stream(exchange, symbol, "orderbook")
        assert not sent.ids and not lx.hub.awaiting_snapshot, "a diff stream or a REST snapshot was used"
        # every frame sent is one row, in order, nothing else
        assert [r["nonce"] for r in rows] == sent.snapshots, symbol
        for r in rows:
            bids, asks = top.books[(symbol, r["nonce"])]
            assert r["kind"] == "snapshot" and r["prev_nonce"] is None and r["checksum"] is None
            assert levels(r, "bid") == as_floats(bids) and levels(r, "ask") == as_floats(asks), (symbol, r["nonce"])
            assert len(bids) == len(asks) == DEPTH
            if exchange != "okx":  # Binance spot partial frames carry no time: the receive time
                assert r["timestamp"] == r["recv_ns"] // 1_000_000
            elif top.times[(symbol, r["nonce"])]:  # OKX books5: `ts`, the book's exchange time (0: the
                assert r["timestamp"] == top.times[(symbol, r["nonce"])]  # seeded book, never updated yet)
        resyncs = rows_of(events, exchange=exchange, symbol=symbol, event="resync")
        assert [e["reason"] for e in resyncs] == ["partial stream"]
    trades = rows_of(tables["trades"], exchange=exchange)
    assert trades and {t["symbol"] for t in trades} == set(SYMBOLS)  # the other channels are unaffected

    # the ETL: features from the snapshot rows; each row replaced the book
    data = tmp_path
    opts = FeatureOptions(hf_emit_interval=0.2, bar_durations=[1])
    assert opts.max_levels > DEPTH
    outcomes = EtlRunner(data / "segments", data / "features", data / "state", opts, reorder_window=0.2).run_once()
    assert outcomes and all(o.state == "done" for o in outcomes)
    hf = ds.dataset(data / "features/hf", format="parquet", partitioning="hive").to_table()
    checkpoint = CheckpointStore(data / "state").load()
    for symbol in SYMBOLS:
        rows = rows_of(tables["orderbook"], exchange=exchange, symbol=symbol)
        mine = hf.filter(pc.equal(hf.column("symbol"), symbol.replace("/", "-")))
        assert mine.num_rows >= 5, symbol
        assert set(mine.column("bid_levels").to_pylist()) == {DEPTH} == set(mine.column("ask_levels").to_pylist())
        tops = {(r["bid_px"][0], r["ask_px"][0]) for r in rows}
        assert set(zip(mine.column("best_bid").to_pylist(), mine.column("best_ask").to_pylist())) <= tops
        engine = FeatureEngine.from_state(checkpoint.symbols[(exchange, symbol)][0], opts, max_gap_ms=DEFAULT_MAX_GAP_MS)
        stats = engine.stats()
        reached = stats["book_messages"]
        assert len(rows) // 2 < reached <= len(rows), symbol  # the rest waits for the watermark
        assert stats["book_snapshots"] == reached and stats["book_gaps"] == 0
        bid_px, bid_sz, ask_px, ask_sz = (a.tolist() for a in engine.book())
        last = rows[reached - 1]
        assert (bid_px, bid_sz, ask_px, ask_sz) == (last["bid_px"], last["bid_sz"], last["ask_px"], last["ask_sz"])
        assert np.isfinite(mine.column("mid_price").to_numpy()).all()


@pytest.mark.parametrize("exchange, kind", [("binance", "gap"), ("binance", "abrupt_disconnect"),
                                            ("okx", "gap"), ("okx", "disconnect")])
def test_partial_stream_needs_no_resync_after_a_lost_message_and_recovers_a_connection(tmp_path, exchange, kind):
    """A withheld update (gap fault) is not a gap for a partial stream: the next push replaces the
    book, so no `gap` event and no resync; a dropped connection is a `reconnect` and rows resume.
    Every row stays exactly the top N of the loopback's book at its id."""
    async def body():
        sim = SimOptions(rate=25, trades_per_update=0.7, ticker_interval=0.5, seed=19)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            top = TopBooks(lx, DEPTH)
            cfg = make_config(tmp_path, [partial_entry(lx, exchange)], stall_timeout=60.0)
            async with running_collector(cfg) as col:
                rec = col.recorder
                count = lambda: min(len(lx.sent.stream(exchange, s, "orderbook").snapshots) for s in SYMBOLS)  # noqa: E731
                await wait_until(lambda: count() >= 20, timeout=60, what="20 partial frames per symbol")
                if kind == "gap":
                    lx.faults.gap("BTC/USDT", count=3)
                else:
                    assert await lx.faults.disconnect(abrupt=kind == "abrupt_disconnect") >= 1
                t_fault, mark = time.time_ns(), time.monotonic_ns()  # (last_seen's clock is the monotonic one)
                await wait_until(lambda: all(rec.last_seen.get((exchange, "orderbook", s), 0) > mark + 300_000_000
                                             for s in SYMBOLS), timeout=60, what=f"books flowing again after {kind}")
                lx.freeze()
                await drained(lx, col)
            return lx, top, ready_tables(tmp_path), t_fault

    lx, top, tables, t_fault = asyncio.run(asyncio.wait_for(body(), 120))
    events = tables["events"].to_pylist()
    assert not [e for e in events if e["event"] in ("gap", "dropped")], events
    for symbol in SYMBOLS:
        rows = rows_of(tables["orderbook"], exchange=exchange, symbol=symbol)
        stream = lx.sent.stream(exchange, symbol, "orderbook")
        nonces = [r["nonce"] for r in rows]
        assert nonces == sorted(set(nonces)) and set(nonces) <= set(stream.snapshots)
        assert [r for r in rows if r["recv_ns"] > t_fault], symbol  # collection resumed
        for r in rows:
            bids, asks = top.books[(symbol, r["nonce"])]
            assert r["kind"] == "snapshot" and levels(r, "bid") == as_floats(bids) and levels(r, "ask") == as_floats(asks)
        resyncs = [e for e in events if e["event"] == "resync" and e["symbol"] == symbol]
        assert len(resyncs) == 1 and resyncs[0]["reason"] == "partial stream"
        if kind == "gap" and symbol == "BTC/USDT":
            withheld = stream.dropped
            assert len(withheld) == 3 and not any(a <= n <= b for a, b in withheld for n in nonces)
            assert nonces == stream.snapshots  # everything sent is stored: a lost push costs nothing more
        if kind != "gap":
            reconnects = [e for e in events if e["event"] == "reconnect" and e["symbol"] == symbol
                          and e["channel"] == "orderbook" and e["recv_ns"] > t_fault]
            assert reconnects, (symbol, events)
