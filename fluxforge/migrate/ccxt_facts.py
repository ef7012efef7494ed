"""What ccxt.pro itself says about an exchange, read offline, for moving old config and data in.

Why: Daedalus called `watchOHLCV(symbol)` without a timeframe, so its candles are at the
timeframe that exchange's ccxt.pro `watch_ohlcv` defaults to (1m almost everywhere, 15m on
p2b, 1s on upbit) and its files never say which; and a translated config must not ask for a
channel the exchange cannot serve (`fluxforge collect` would refuse the whole file).  Both
answers come from the unmodified ccxt classes, constructed without any network, and the
channel answer from the very rules `fluxforge collect` applies (collector/channel_support.py).
"""
from __future__ import annotations

import functools
import inspect
from typing import Any

from ..collector.ccxt_loader import exchange_classes, is_pro_exchange
from ..collector.channel_support import channel_problems

DEFAULT_TIMEFRAME = "1m"  # ccxt's own default, for an id ccxt.pro does not have


@functools.lru_cache(maxsize=None)
def _exchange(exchange_id: str) -> Any:
    return exchange_classes([exchange_id])[exchange_id]()


@functools.lru_cache(maxsize=None)
def default_ohlcv_timeframe(exchange_id: str) -> str:
    """The timeframe `watch_ohlcv(symbol)` asks `exchange_id` for when given none."""
    if not is_pro_exchange(exchange_id):
        return DEFAULT_TIMEFRAME
    param = inspect.signature(type(_exchange(exchange_id)).watch_ohlcv).parameters.get("timeframe")
    return param.default if param is not None and isinstance(param.default, str) else DEFAULT_TIMEFRAME


def has(exchange_id: str, capability: str) -> bool:
    """ccxt.pro's `has[capability]` for `exchange_id` (False for an id ccxt.pro lacks)."""
    return is_pro_exchange(exchange_id) and bool(_exchange(exchange_id).has.get(capability))


def unsupported_channels(exchange_id: str, channels: list[str], timeframes: list[str]) -> dict[str, str]:
    """channel -> why ccxt.pro's `exchange_id` cannot serve it (empty for an id ccxt.pro lacks:
    that is warned about on its own)."""
    if not is_pro_exchange(exchange_id):
        return {}
    return channel_problems(_exchange(exchange_id), channels, timeframes)
