"""One `exchanges:` entry of the configuration: which ccxt.pro exchange, which symbols,
which channels, how deep a book.

Why a module of its own: the exchange entry is where a user's market layout lives and it
grows with every channel and stream option; config.py holds the file as a whole.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from .config_base import StrictModel, distinct_partitions
from .etl.naming import symbol_path_value

CHANNELS = ("orderbook", "trades", "ticker")


class ExchangeConfig(StrictModel):
    """One exchange: `ccxt` goes verbatim to the ccxt.pro constructor."""

    name: str = Field(..., description="ccxt.pro exchange id, e.g. binance, okx")
    ccxt: dict[str, Any] = Field(default_factory=dict)
    symbols: list[str] = Field(..., min_length=1)
    channels: list[Literal["orderbook", "trades", "ticker"]] = Field(default_factory=lambda: list(CHANNELS))
    book_depth: int = Field(50, ge=1, le=1000)

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
