"""ccxt's Binance `watchTickers` follows `watchTicker`'s stream unless the config chose one
(collector/ticker_stream.py), on the real ccxt.pro classes."""
from __future__ import annotations

import ccxt.pro
import pytest

from fluxforge.collector.ticker_stream import align_ticker_stream


@pytest.mark.parametrize("name", ["binance", "binanceus", "binanceusdm", "binancecoinm"])
def test_binance_grouped_tickers_use_the_full_ticker_stream(name):
    exchange = getattr(ccxt.pro, name)()
    assert exchange.options["watchTickers"]["name"] == "miniTicker"  # ccxt's default: no bid/ask
    assert align_ticker_stream(exchange, {"enableRateLimit": True}) == "ticker"
    assert exchange.options["watchTickers"]["name"] == exchange.options["watchTicker"]["name"] == "ticker"
    assert getattr(ccxt.pro, name)().options["watchTickers"]["name"] == "miniTicker"  # the class is untouched


def test_a_configured_stream_is_kept_as_written():
    config = {"options": {"watchTickers": {"name": "miniTicker"}}}
    exchange = ccxt.pro.binance(config)
    assert align_ticker_stream(exchange, config) is None
    assert exchange.options["watchTickers"]["name"] == "miniTicker"


@pytest.mark.parametrize("name", ["okx", "coinbase", "kraken", "bybit"])
def test_other_exchanges_are_left_alone(name):
    exchange = getattr(ccxt.pro, name)()
    before = dict(exchange.options.get("watchTickers") or {})
    assert align_ticker_stream(exchange, {}) is None
    assert dict(exchange.options.get("watchTickers") or {}) == before
