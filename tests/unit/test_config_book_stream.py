"""`book_stream: full|partial` and `partial_depth`: only depths the exchange offers are accepted."""
from __future__ import annotations

import pytest

from fluxforge.config import ConfigError, parse_config


def entry(name: str = "binance", **extra) -> dict:
    return {"exchanges": [{"name": name, "symbols": ["BTC/USDT"], **extra}]}


def test_default_is_the_full_diff_stream():
    x = parse_config(entry()).exchanges[0]
    assert x.book_stream == "full" and x.partial_depth is None


@pytest.mark.parametrize("name, depth", [("binance", 5), ("binance", 10), ("binance", 20), ("binanceus", 20),
                                         ("okx", 5)])
def test_offered_partial_depths_are_accepted(name, depth):
    x = parse_config(entry(name, book_stream="partial", partial_depth=depth)).exchanges[0]
    assert (x.book_stream, x.partial_depth) == ("partial", depth)


@pytest.mark.parametrize("name, extra, needle", [
    ("binance", {"book_stream": "partial", "partial_depth": 50},
     "exchanges.0: Value error, partial_depth: binance offers partial books of 5, 10, 20 levels per side (not 50)"),
    ("binance", {"book_stream": "partial"}, "5, 10, 20 levels per side (none given)"),
    ("okx", {"book_stream": "partial", "partial_depth": 10}, "okx offers partial books of 5 levels per side (not 10)"),
    ("kraken", {"book_stream": "partial", "partial_depth": 10}, "kraken has no partial book stream here"),
    ("binance", {"partial_depth": 10}, "partial_depth is only used with book_stream: partial"),
    ("binance", {"book_stream": "top"}, "exchanges.0.book_stream"),
])
def test_depths_the_exchange_does_not_offer_are_refused_naming_the_allowed_ones(name, extra, needle):
    with pytest.raises(ConfigError) as e:
        parse_config(entry(name, **extra), "t.yaml")
    assert needle in str(e.value)
    assert e.value.exit_code == 78
