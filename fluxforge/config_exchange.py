"""One `exchanges:` entry of the configuration: which ccxt.pro exchange, which symbols,
which channels, how deep a book.

Why a module of its own: the exchange entry is where a user's market layout lives and it
grows with every channel and stream option; config.py holds the file as a whole.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from .config_base import StrictModel, distinct_partitions
from .etl.naming import symbol_path_value

CHANNELS = ("orderbook", "trades", "ticker", "ohlcv", "bidsasks")
DEFAULT_CHANNELS = ("orderbook", "trades", "ticker")
TIMEFRAME = re.compile(r"[1-9][0-9]*[smhdwMy]")  # ccxt's unified timeframe form: 1m, 4h, 1d, 1M


class ExchangeConfig(StrictModel):
    """One exchange: `ccxt` goes verbatim to the ccxt.pro constructor."""

    name: str = Field(..., description="ccxt.pro exchange id, e.g. binance, okx")
    ccxt: dict[str, Any] = Field(default_factory=dict)
    symbols: list[str] = Field(..., min_length=1)
    channels: list[Literal[CHANNELS]] = Field(default_factory=lambda: list(DEFAULT_CHANNELS))  # type: ignore[valid-type]
    book_depth: int = Field(50, ge=1, le=1000)
    ohlcv_timeframes: list[str] = Field(default_factory=lambda: ["1m"], min_length=1)

    @field_validator("symbols")
    @classmethod
    def _unified(cls, v: list[str]) -> list[str]:
        for s in v:
            if "/" not in s:
                raise ValueError(f"{s!r} is not a ccxt unified symbol like 'BTC/USDT'")
        if len(set(v)) != len(v):
            raise ValueError("symbols must be unique")
        distinct_partitions(v, symbol_path_value, "symbols")
        return v

    @field_validator("ohlcv_timeframes")
    @classmethod
    def _timeframes(cls, v: list[str]) -> list[str]:
        for tf in v:
            if not TIMEFRAME.fullmatch(tf):
                raise ValueError(f"{tf!r} is not a ccxt timeframe like '1m', '5m', '1h', '1d'")
        if len(set(v)) != len(v):
            raise ValueError("ohlcv_timeframes must be unique")
        return v
