"""Candles as ccxt receives them: every OHLCV update, not the cache ccxt keeps.

Why a cache of our own: ccxt.pro resolves a `watch_ohlcv` with its whole candle
cache (`ArrayCacheByTimestamp`, one per symbol and timeframe), where an update of
the open candle overwrites the previous values in place; which candle one message
touched is not visible in what is resolved.  ccxt's handlers all look the cache up
in `exchange.ohlcvs[symbol][timeframe]` and only create one when none is there,
so the tap puts a `RecordingCandles` there before each watch: its `append` (the
one call every handler makes per parsed candle) reports the candle, values as
parsed, synchronously inside the frame's handling -- one bronze row per update.

An exchange may report a symbol's candles under another name (an `aliases` entry):
the tap installs caches under those names too.  Candles under a name nobody
expected land in a cache ccxt made itself; the tap notices it when ccxt resolves it
(`candle_cache_of`), reports its newest candle and puts a recording cache in its
place (`adopt_foreign_cache`), so such rows are counted as unrequested, never lost
silently.
"""
from __future__ import annotations

from typing import Any, Callable

from ccxt.async_support.base.ws.cache import ArrayCacheByTimestamp

OnCandle = Callable[[str, str, list], None]  # (symbol, timeframe, [open ms, o, h, l, c, v])


class RecordingCandles(ArrayCacheByTimestamp):
    """ccxt's OHLCV cache of one (symbol, timeframe) that reports each candle appended to it."""

    def __init__(self, max_size: int | None, symbol: str, timeframe: str, on_candle: OnCandle):
        super().__init__(max_size)
        self.symbol = symbol
        self.timeframe = timeframe
        self.on_candle = on_candle

    def append(self, item: list) -> None:
        super().append(item)
        self.on_candle(self.symbol, self.timeframe, list(item))


def install_candle_caches(exchange: Any, pairs: list[tuple[str, str]], on_candle: OnCandle) -> None:
    """Make `exchange.ohlcvs[symbol][timeframe]` a `RecordingCandles` for each (symbol, timeframe).

    A cache that already records is kept (with its candles); any other is replaced."""
    limit = exchange.safe_integer(exchange.options, "OHLCVLimit", 1000)
    if exchange.ohlcvs is None:
        exchange.ohlcvs = {}
    for symbol, timeframe in pairs:
        per_symbol = exchange.ohlcvs.get(symbol)
        if not isinstance(per_symbol, dict):
            per_symbol = exchange.ohlcvs[symbol] = {}
        if not isinstance(per_symbol.get(timeframe), RecordingCandles):
            per_symbol[timeframe] = RecordingCandles(limit, symbol, timeframe, on_candle)


def candle_cache_of(result: Any) -> tuple[Any, str | None, str | None] | None:
    """(cache, symbol, timeframe) of a resolved OHLCV result: the cache itself (symbol and timeframe
    unknown), or Binance's `[symbol, timeframe, cache]`; None for anything else."""
    if isinstance(result, ArrayCacheByTimestamp):
        return result, None, None
    if isinstance(result, list) and len(result) == 3 and isinstance(result[2], ArrayCacheByTimestamp):
        return result[2], result[0], result[1]
    return None


def adopt_foreign_cache(exchange: Any, cache: Any, symbol: str | None, timeframe: str | None,
                        on_candle: OnCandle) -> None:
    """If `cache` is one ccxt made itself (a name nobody watches), report its newest candle and
    replace it by a `RecordingCandles`, which reports the updates after it as they come."""
    if isinstance(cache, RecordingCandles) or not len(cache):
        return
    ohlcvs = exchange.ohlcvs or {}
    if symbol is None:
        symbol, timeframe = next(((s, tf) for s, per in ohlcvs.items() if isinstance(per, dict)
                                  for tf, c in per.items() if c is cache), (None, None))
    if symbol is None or not isinstance(ohlcvs.get(symbol), dict) or ohlcvs[symbol].get(timeframe) is not cache:
        return  # not (or no longer) where ccxt looks it up: already adopted
    install_candle_caches(exchange, [(symbol, timeframe)], on_candle)
    on_candle(symbol, timeframe, list(cache[-1]))
