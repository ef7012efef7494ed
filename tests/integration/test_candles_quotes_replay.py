"""Replay mode serves `bookTicker` and `kline_<tf>` too, and the collector records them.

The capture's own bookTicker lines are the truth for `bidsasks`: every one of them, in
order, becomes a bronze row with its values (ccxt parses `b`, `B`, `a`, `A`).  Klines are
built by the loopback from the capture's trades; bronze must hold every update it sent,
and each candle's last row must be a consistent candle.
"""
from __future__ import annotations

import asyncio
import gzip

from collector_support import drained, make_config, ready_tables, rows_of, running_collector, wait_until
from test_collector_e2e import binance_entry

from fluxforge.loopback import LoopbackExchange, SimOptions
from fluxforge.loopback.capture import iter_capture

LINES = 6000  # ~1 minute of the BTCUSDT capture: ~4,000 bookTickers, ~1,000 trades
SYMBOL = "BTC/USDT"


def test_replayed_quotes_and_candles_reach_bronze(tmp_path, shared_capture):
    capture = tmp_path / "btcusdt.txt"
    with gzip.open(shared_capture / "btcusdt_20240808.gz", "rt") as f, capture.open("w") as out:
        for _ in range(LINES):
            out.write(f.readline())
    quotes = [line.message["data"] for line in iter_capture(capture)
              if hasattr(line, "message") and line.message.get("stream", "").endswith("@bookTicker")]
    assert len(quotes) > 1000

    async def body():
        lx = LoopbackExchange("replay", replay_files=[capture], speed=0, sim=SimOptions(ticker_interval=0.5))
        lx.freeze()  # hold the replay until the collector has subscribed
        async with lx:
            entry = binance_entry(lx, [SYMBOL], channels=["bidsasks", "ohlcv"], ohlcv_timeframes=["1s", "1m"])
            cfg = make_config(tmp_path / "data", [entry], segment_max_seconds=1.0)
            async with running_collector(cfg) as collector:
                subscribed = lambda: all(lx.hub.subscribers.get((SYMBOL, ch)) for ch in ("bidsasks", "ohlcv"))  # noqa: E731
                await wait_until(subscribed, 60, what="bookTicker and kline subscriptions")
                lx.freeze(False)
                await wait_until(lambda: lx.source.finished, 120, what="replay finished")
                await drained(lx, collector)
            tables = ready_tables(tmp_path / "data")
            rows = rows_of(tables["bidsasks"], exchange="binance", symbol=SYMBOL)
            assert [(r["bid"], r["bid_size"], r["ask"], r["ask_size"]) for r in rows] == [
                (float(q["b"]), float(q["B"]), float(q["a"]), float(q["A"])) for q in quotes]
            candles = rows_of(tables["ohlcv"], exchange="binance", symbol=SYMBOL)
            sent = lx.sent.stream("binance", SYMBOL, "ohlcv").values
            assert len(candles) == len(sent) > 50
            assert [(r["timeframe"], r["timestamp"], r["close"], r["volume"]) for r in candles] == [
                (tf, t, float(c), float(v)) for tf, t, _o, _h, _l, c, v in sent]
            final = {}
            for r in sorted(candles, key=lambda r: r["recv_ns"]):
                final[(r["timeframe"], r["timestamp"])] = r  # the documented reader rule: last row wins
            assert {tf for tf, _ in final} == {"1s", "1m"}
            for (tf, ts), r in final.items():
                assert r["low"] <= min(r["open"], r["close"]) <= max(r["open"], r["close"]) <= r["high"]
                assert ts % (1000 if tf == "1s" else 60_000) == 0

    asyncio.run(asyncio.wait_for(body(), 240))
