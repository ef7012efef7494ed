"""Row conversion and configuration of the `ohlcv` and `bidsasks` bronze channels.

Rows go through the collector's own buffers (`new_buffers`, `to_batch`) into Arrow; the
schemas are checked against docs/schemas.md's tables; ccxt's real candle cache is driven
by ccxt's real Binance kline handler to show that every update is reported.
"""
from __future__ import annotations

import asyncio

import ccxt.pro
import pytest
from pydantic import ValidationError

from documented_schema import assert_documented
from fluxforge.bronze.schemas import BIDSASKS, CHANNEL_SCHEMAS, OHLCV
from fluxforge.collector.candle_tap import RecordingCandles, install_candle_caches
from fluxforge.collector.channel_support import channel_problems
from fluxforge.collector.rows import BadRow, BidAskBuffer, OhlcvBuffer, new_buffers
from fluxforge.config import FeatureOptions
from fluxforge.config_exchange import ExchangeConfig


def test_ohlcv_rows_convert_with_their_timeframe():
    buf = new_buffers()["ohlcv"]
    buf.add("binance", "BTC/USDT", "1m", [1_700_000_040_000, 10.0, 12.5, 9.5, 11.0, 3.25], 111)
    buf.add("binance", "BTC/USDT", "1m", [1_700_000_040_000, "10", "13", "9.5", "12", "4"], 222)  # same candle, later
    buf.add("binance", "ETH/USDT", "1h", [1_699_999_200_000, 2.0, 2.0, 2.0, 2.0], 333)  # no volume
    batch = buf.to_batch()
    assert batch.schema.equals(OHLCV)
    assert batch.to_pylist() == [
        dict(exchange="binance", symbol="BTC/USDT", timestamp=1_700_000_040_000, recv_ns=111, timeframe="1m",
             open=10.0, high=12.5, low=9.5, close=11.0, volume=3.25),
        dict(exchange="binance", symbol="BTC/USDT", timestamp=1_700_000_040_000, recv_ns=222, timeframe="1m",
             open=10.0, high=13.0, low=9.5, close=12.0, volume=4.0),
        dict(exchange="binance", symbol="ETH/USDT", timestamp=1_699_999_200_000, recv_ns=333, timeframe="1h",
             open=2.0, high=2.0, low=2.0, close=2.0, volume=None),
    ]


@pytest.mark.parametrize("candle, message", [
    ([1.5, 1, 2, 0, 1, 1], "timestamp 1.5 is not an integer"),
    ([1, "x", 2, 0, 1, 1], "open 'x' is not a number"),
    ([1, 1, 2, 0, 1, {}], "volume {} is not a number"),
    (None, "is not a list"),
    ([], "is not a list"),
])
def test_bad_candles_are_refused_alone(candle, message):
    with pytest.raises(BadRow, match=message):
        OhlcvBuffer.prepare("binance", "BTC/USDT", "1m", candle, 1)


def test_bidask_rows_convert():
    buf = new_buffers()["bidsasks"]
    buf.add("binance", "BTC/USDT", {"symbol": "BTC/USDT", "timestamp": None, "bid": 100.5, "bidVolume": 2.0,
                                    "ask": "100.6", "askVolume": 0.25, "last": None}, 7)
    batch = buf.to_batch()
    assert batch.schema.equals(BIDSASKS)
    assert batch.to_pylist() == [dict(exchange="binance", symbol="BTC/USDT", timestamp=None, recv_ns=7, bid=100.5,
                                      bid_size=2.0, ask=100.6, ask_size=0.25)]
    with pytest.raises(BadRow, match="ask 'n/a' is not a number"):
        BidAskBuffer.prepare("binance", "BTC/USDT", {"ask": "n/a"}, 1)


@pytest.mark.parametrize("channel, section", [("ohlcv", "`ohlcv.parquet`"), ("bidsasks", "`bidsasks.parquet`")])
def test_schemas_are_documented(channel, section):
    assert_documented(CHANNEL_SCHEMAS[channel], section, FeatureOptions())


def test_every_candle_update_is_reported_through_ccxts_own_handler():
    """ccxt's binance `handle_ohlcv` overwrites the open candle in place; each update is still reported."""
    asyncio.run(_drive_binance_kline_handler())


async def _drive_binance_kline_handler():
    ex = ccxt.pro.binance()
    ex.markets_by_id = {"BTCUSDT": [{"id": "BTCUSDT", "symbol": "BTC/USDT", "type": "spot"}]}
    ex.markets = {"BTC/USDT": ex.markets_by_id["BTCUSDT"][0]}
    seen = []
    install_candle_caches(ex, [("BTC/USDT", "1m")], lambda s, tf, c: seen.append((s, tf, c)))
    client = ex.client("wss://stream.binance.com:9443/ws")
    for t, close, closed in ((60_000, "2", False), (60_000, "3", True), (120_000, "3", False)):
        ex.handle_ohlcv(client, {"e": "kline", "E": t + 1, "s": "BTCUSDT", "k": {
            "t": t, "T": t + 59_999, "s": "BTCUSDT", "i": "1m", "o": "1", "h": "3", "l": "1", "c": close,
            "v": "5", "x": closed}})
    assert seen == [("BTC/USDT", "1m", [60_000, 1.0, 3.0, 1.0, 2.0, 5.0]),
                    ("BTC/USDT", "1m", [60_000, 1.0, 3.0, 1.0, 3.0, 5.0]),
                    ("BTC/USDT", "1m", [120_000, 1.0, 3.0, 1.0, 3.0, 5.0])]
    cache = ex.ohlcvs["BTC/USDT"]["1m"]
    assert isinstance(cache, RecordingCandles) and len(cache) == 2  # ccxt's cache itself works as before
    install_candle_caches(ex, [("BTC/USDT", "1m")], lambda *a: None)
    assert ex.ohlcvs["BTC/USDT"]["1m"] is cache  # installed once, kept across watch calls
    await ex.close()


def test_channels_an_exchange_cannot_serve_are_named():
    assert channel_problems(ccxt.pro.binance(), ["orderbook", "ohlcv", "bidsasks"], ["1s", "1m", "1d"]) == {}
    problems = channel_problems(ccxt.pro.coinbase(), ["trades", "bidsasks"], ["1m"])
    assert problems == {"bidsasks": "ccxt.pro 'coinbase' has no watchBidsAsks (has['watchBidsAsks'] is false)"}
    problems = channel_problems(ccxt.pro.binance(), ["ohlcv"], ["1m", "7m"])
    assert list(problems) == ["ohlcv"] and "no timeframe '7m'" in problems["ohlcv"]


def test_config_channels_and_timeframes():
    x = ExchangeConfig(name="binance", symbols=["BTC/USDT"])
    assert x.channels == ["orderbook", "trades", "ticker"] and x.ohlcv_timeframes == ["1m"]
    x = ExchangeConfig(name="binance", symbols=["BTC/USDT"], channels=["ohlcv", "bidsasks"],
                       ohlcv_timeframes=["1m", "4h", "1M"])
    assert x.channels == ["ohlcv", "bidsasks"]
    for bad, message in (({"ohlcv_timeframes": ["1x"]}, "'1x' is not a ccxt timeframe"),
                         ({"ohlcv_timeframes": ["1m", "1m"]}, "must be unique"),
                         ({"ohlcv_timeframes": []}, "at least 1 item"),
                         ({"channels": ["candles"]}, r"'candles' is not a channel \(one of orderbook, trades, ticker, ohlcv, bidsasks\)")):
        with pytest.raises(ValidationError, match=message):
            ExchangeConfig(name="binance", symbols=["BTC/USDT"], **bad)


def test_status_counts_candle_and_quote_rows_as_fresh_data(tmp_path):
    """A symbol collected only as ohlcv / bidsasks is not reported silent by `fluxforge status`."""
    import time

    import pyarrow as pa

    from fluxforge.bronze.finish import build_segment
    from fluxforge.bronze.segments import SegmentStore
    from fluxforge.observe.stream_health import scan

    now = time.time_ns()
    store = SegmentStore(tmp_path / "segments").ensure()
    candles, quotes = new_buffers()["ohlcv"], new_buffers()["bidsasks"]
    for i in range(3):
        candles.add("binance", "BTC/USDT", "1m", [60_000, 1, 1, 1, 1, 1], now - i)
    quotes.add("binance", "ETH/USDT", {"bid": 1.0, "ask": 2.0}, now)
    build_segment(store, "pi01", {"ohlcv": pa.Table.from_batches([candles.to_batch()]),
                                  "bidsasks": pa.Table.from_batches([quotes.to_batch()])})
    streams = scan(store, now, 3600).streams
    assert streams[("binance", "BTC/USDT")].rows_last_hour == 3
    assert streams[("binance", "ETH/USDT")].rows_last_hour == 1
