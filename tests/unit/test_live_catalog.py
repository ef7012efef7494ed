"""A subscription to what this ETL does not serve is refused with one clear line (fluxforge/live/catalog.py)."""
import pytest

from fluxforge.config import Config
from fluxforge.live.catalog import Catalog
from fluxforge.live.protocol import RequestError, parse_request


def _catalog(**etl) -> Catalog:
    return Catalog.from_config(Config.model_validate({
        "data_dir": "/tmp/unused", "host_id": "t", "etl": etl,
        "exchanges": [{"name": "binance", "symbols": ["BTC/USDT", "ETH/USDT"]},
                      {"name": "okx", "symbols": ["BTC/USDT:USDT"]}]}))


def test_products_follow_the_options_and_each_symbols_overrides():
    cat = _catalog(features={"bar_durations": [1, 60]},
                   trades={"bar_durations": [5], "volume_bar_size": 0.0, "dollar_bar_size": 1e6},
                   symbol_overrides={"binance:ETH/USDT": {"bar_durations": [7], "volume_bar_size": 2.0,
                                                          "per_trade": True}})
    assert cat.products == {"hf", "bars/interval=1s", "bars/interval=60s", "trade_bars/interval=5s",
                            "trade_bars/interval=7s", "dollar_bars", "volume_bars", "trades", "ticker"}
    assert cat.streams == {("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("okx", "BTC/USDT:USDT")}


@pytest.mark.parametrize("request_, error", [
    ({"products": ["bar"]}, "products: 'bar' not made by this ETL; it makes bars/interval=1s, "),
    ({"products": ["hf", "bars/interval=7s"]}, "products: 'bars/interval=7s' not made"),
    ({"products": ["volume_bars"]}, "products: 'volume_bars' not made"),  # volume_bar_size 0: none
    ({"exchanges": ["binanceus"]}, "exchanges: 'binanceus' not collected here; this host has binance, okx"),
    ({"symbols": ["XRP/USDT"]}, "symbols: 'XRP-USDT' not collected here (on binance, okx); this host has "
                                "BTC/USDT, BTC/USDT:USDT, ETH/USDT"),
    ({"symbols": ["BTC/USDT:USDT"], "exchanges": ["binance"]}, "symbols: 'BTC-USDT-USDT' not collected here (on binance)"),
])
def test_what_is_not_served_is_refused_by_name(request_, error):
    with pytest.raises(RequestError) as e:
        _catalog(features={"bar_durations": [1, 60]}, trades={"volume_bar_size": 0.0}).check(parse_request(request_))
    assert error in str(e.value)


@pytest.mark.parametrize("request_", [
    {}, {"products": ["hf", "bars", "trade_bars"]}, {"products": "bars/interval=60s"},
    {"symbols": ["BTC-USDT", "ETH/USDT"]}, {"exchanges": "okx", "symbols": "BTC/USDT:USDT"},
    {"products": ["ticker", "dollar_bars"], "exchanges": ["binance", "okx"]},
])
def test_what_is_served_is_accepted_in_either_spelling(request_):
    _catalog(features={"bar_durations": [1, 60]}, trades={"volume_bar_size": 0.0}).check(parse_request(request_))


def test_a_stream_the_hub_holds_rows_of_is_accepted_though_no_longer_configured():
    cat = _catalog()
    request = parse_request({"exchanges": ["kraken"], "symbols": ["SOL/USD"]})
    with pytest.raises(RequestError):
        cat.check(request)
    cat.check(request, held={("kraken", "SOL/USD")})
