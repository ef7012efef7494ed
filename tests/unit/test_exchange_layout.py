"""An exchange entry's layout: per-channel symbol lists, aliases, isolate_books, and the watch plan.

The plan is checked against what ccxt would be asked (channel x symbol group), with the
listed markets and grouped-call support given as data: the collector runs exactly that.
"""
from __future__ import annotations

import pytest

from fluxforge.collector.watch_plan import Watch, plan_watches
from fluxforge.config import ConfigError, parse_config
from fluxforge.config_exchange import CHANNELS, DEFAULT_CHANNELS, ExchangeConfig

FIFTY = [f"C{i:02d}/USDT" for i in range(50)]


def entry(**kw) -> ExchangeConfig:
    return ExchangeConfig(**{"name": "binance", **kw})


def config_error(**kw) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config({"exchanges": [{"name": "binance", **kw}]}, "t.yaml")
    assert e.value.exit_code == 78
    return str(e.value)


def test_a_channel_list_collects_every_symbol_on_every_channel():
    x = entry(symbols=["BTC/USDT", "ETH/USDT"], channels=["trades", "orderbook"])
    assert x.channel_symbols() == {"orderbook": ["BTC/USDT", "ETH/USDT"], "trades": ["BTC/USDT", "ETH/USDT"]}
    assert entry(symbols=["BTC/USDT"]).channel_symbols() == {ch: ["BTC/USDT"] for ch in DEFAULT_CHANNELS}


def test_a_channel_map_needs_no_symbols_and_fills_them_in():
    x = entry(channels={"trades": FIFTY, "orderbook": FIFTY[:10]})
    assert x.channel_symbols() == {"orderbook": FIFTY[:10], "trades": FIFTY}
    assert x.symbols == FIFTY  # every collected symbol: what status and the STATUS line count


def test_all_in_a_map_means_the_entry_symbols_and_lists_add_their_own():
    x = entry(symbols=FIFTY, channels={"trades": "all", "ticker": "all", "orderbook": ["XRP/USDT", FIFTY[0]]})
    assert x.channel_symbols() == {"orderbook": ["XRP/USDT", FIFTY[0]], "trades": FIFTY, "ticker": FIFTY}
    assert x.symbols == FIFTY + ["XRP/USDT"]
    # the loaded entry validates again as it is (config check prints it; a dump round-trips)
    assert ExchangeConfig(**x.model_dump()).channel_symbols() == x.channel_symbols()


@pytest.mark.parametrize("kw, needle", [
    ({"channels": {"orderbook": ["BTCUSDT"]}}, "orderbook: 'BTCUSDT' is not a ccxt unified symbol"),
    ({"channels": {"trades": ["/USDT"]}}, "trades: '/USDT' is not a ccxt unified symbol"),
    ({"channels": {"book": ["BTC/USDT"]}}, "'book' is not a channel (one of orderbook, trades, ticker, ohlcv, bidsasks)"),
    ({"symbols": ["BTC/USDT"], "channels": ["book"]}, "'book' is not a channel"),
    ({"symbols": ["BTC/USDT"], "channels": "orderbook"}, "a list of channels"),
    ({"channels": {"trades": ["BTC/USDT", "BTC/USDT"]}}, "trades: symbols must be unique"),
    ({"channels": {"trades": []}}, "trades: empty symbol list"),
    ({"channels": {}}, "the channel map is empty"),
    ({"channels": {"trades": "every"}}, "trades: a list of symbols or 'all', not 'every'"),
    ({"channels": {"trades": "all"}}, "'all' stands for the entry's `symbols`, which are not given"),
    # the classic mistake: trades were meant for all 50, but only books are named
    ({"symbols": FIFTY[:3], "channels": {"orderbook": FIFTY[:1]}}, "are collected by no channel"),
    ({"symbols": ["BTC/USDC"], "aliases": {"BTC/USD": "ETH/USDC"}}, "'ETH/USDC' is not one of this exchange's"),
    ({"symbols": ["BTC/USDC", "BTC/USD"], "aliases": {"BTC/USD": "BTC/USDC"}}, "is itself a configured symbol"),
    ({"symbols": ["BTC/USDC"], "aliases": {"BTCUSD": "BTC/USDC"}}, "aliases: 'BTCUSD' is not a ccxt unified"),
    ({"name": ["coinbase"], "symbols": ["BTC/USD"]}, "exchanges.0.name"),  # no crash before the field check
])
def test_bad_layouts_are_refused_with_a_message_that_says_what_to_do(kw, needle):
    message = config_error(**kw)
    assert needle in message and "exchanges.0" in message, message


def test_isolate_books_defaults_per_exchange_and_can_be_set():
    assert ExchangeConfig(name="coinbase", symbols=["BTC/USD"]).isolate_books is True
    assert ExchangeConfig(name="binance", symbols=["BTC/USDT"]).isolate_books is False
    assert ExchangeConfig(name="coinbase", symbols=["BTC/USD"], isolate_books=False).isolate_books is False
    assert ExchangeConfig(name="okx", symbols=["BTC/USDT"], isolate_books=True).isolate_books is True


def test_the_plan_watches_exactly_the_configured_pairs():
    x = entry(symbols=FIFTY, channels={"trades": "all", "orderbook": FIFTY[:10] + ["GONE/USDT"]})
    plan = plan_watches(x, set(FIFTY), grouped={"orderbook", "trades", "ticker"})
    assert plan.unknown == ["GONE/USDT"]
    assert plan.watches == [Watch("orderbook", tuple(FIFTY[:10])), Watch("trades", tuple(FIFTY))]
    assert plan.channel_symbols == {"orderbook": FIFTY[:10], "trades": FIFTY}
    assert plan.symbols == FIFTY


def test_without_a_grouped_call_each_symbol_has_its_own_watch():
    x = entry(channels={"ticker": ["A/B", "C/D"], "trades": ["A/B"]})
    plan = plan_watches(x, {"A/B", "C/D"}, grouped={"trades"})
    assert plan.watches == [Watch("trades", ("A/B",)), Watch("ticker", ("A/B",)), Watch("ticker", ("C/D",))]


def test_isolated_books_get_one_watch_per_symbol_and_the_rest_stays_grouped():
    x = ExchangeConfig(name="coinbase", symbols=["A/B", "C/D", "E/F"])
    plan = plan_watches(x, {"A/B", "C/D", "E/F"}, grouped=set(CHANNELS))
    books = [w for w in plan.watches if w.channel == "orderbook"]
    assert books == [Watch("orderbook", (s,)) for s in ("A/B", "C/D", "E/F")]
    assert [w for w in plan.watches if w.channel != "orderbook"] == [
        Watch("trades", ("A/B", "C/D", "E/F")), Watch("ticker", ("A/B", "C/D", "E/F"))]
    grouped = plan_watches(x.model_copy(update={"isolate_books": False}), {"A/B", "C/D", "E/F"}, set(CHANNELS))
    assert [w for w in grouped.watches if w.channel == "orderbook"] == [Watch("orderbook", ("A/B", "C/D", "E/F"))]


def test_a_channel_with_no_listed_symbol_is_not_watched():
    x = entry(channels={"orderbook": ["GONE/USDT"], "trades": ["A/B"]})
    plan = plan_watches(x, {"A/B"}, grouped=set(CHANNELS))
    assert plan.watches == [Watch("trades", ("A/B",))] and plan.unknown == ["GONE/USDT"]
