"""Several symbols' tickers are recorded from the stream one symbol's would be: ccxt's
`watchTickers` option follows `watchTicker`'s unless the config sets it.

Why: the collector watches a channel's symbols in one grouped call where the exchange
has one (watchers.py: `watch_tickers`), a choice of the appliance, not of the user.  On
ccxt's Binance exchanges (binance, binanceus, binanceusdm, binancecoinm) that call
defaults to `@miniTicker`, which carries no bid or ask, while `watch_ticker` of a single
symbol uses the full `@ticker`: the bronze ticker rows of a two-symbol config had every
quote column null, and the ticker features (features/ticker/: mid, spread, imbalance
windows) NaN, where the same config with one symbol had them.  So the grouped call is
given the single-symbol call's stream name (`options.watchTickers.name`), unless the
config's `ccxt.options.watchTickers.name` chose one (kept as written).
"""
from __future__ import annotations

from typing import Any


def align_ticker_stream(exchange: Any, ccxt_config: dict) -> str | None:
    """Set `exchange.options['watchTickers']['name']` to watchTicker's where they differ and the
    config left it unset; the name set (None: nothing changed)."""
    chosen = ((ccxt_config.get("options") or {}).get("watchTickers") or {})
    if isinstance(chosen, dict) and "name" in chosen:
        return None
    options = getattr(exchange, "options", None)
    if not isinstance(options, dict):
        return None
    single, grouped = options.get("watchTicker"), options.get("watchTickers")
    if not isinstance(single, dict) or not isinstance(grouped, dict):
        return None
    name = single.get("name")
    if not isinstance(name, str) or grouped.get("name") in (None, name):
        return None
    options["watchTickers"] = {**grouped, "name": name}
    return name
