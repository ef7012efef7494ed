"""Which configured channels an exchange's ccxt.pro class can serve, said before anything runs.

Why: `watch_bids_asks` exists on a minority of ccxt.pro exchanges and `watch_ohlcv`
takes only the timeframes an exchange lists; asked anyway, ccxt raises NotSupported
or BadRequest on every retry, a stream that never starts.  `fluxforge collect`
refuses such a config at start-up (exit 78, the field named); a collector started
otherwise (demo, tests) records one `error` event per refused channel and runs the
others.
"""
from __future__ import annotations

from typing import Any

# channel -> the ccxt `has` capability it needs
NEEDS = {"orderbook": "watchOrderBook", "trades": "watchTrades", "ticker": "watchTicker",
         "ohlcv": "watchOHLCV", "bidsasks": "watchBidsAsks"}


def channel_problems(exchange: Any, channels: list[str], timeframes: list[str]) -> dict[str, str]:
    """channel -> why `exchange` (a ccxt.pro instance) cannot serve it; empty when all can be."""
    problems = {}
    name = getattr(exchange, "id", type(exchange).__name__)
    for channel in channels:
        capability = NEEDS[channel]
        if not exchange.has.get(capability):
            problems[channel] = f"ccxt.pro {name!r} has no {capability} (has[{capability!r}] is false)"
    if "ohlcv" in channels and "ohlcv" not in problems and exchange.timeframes:
        unknown = [tf for tf in timeframes if tf not in exchange.timeframes]
        if unknown:
            problems["ohlcv"] = (f"ccxt.pro {name!r} has no timeframe {', '.join(map(repr, unknown))} "
                                 f"(it has {', '.join(exchange.timeframes)})")
    return problems
