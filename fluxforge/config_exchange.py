"""One `exchanges:` entry of the configuration: which ccxt.pro exchange, which symbols,
which channels, how deep a book.

Why a module of its own: the exchange entry is where a user's market layout lives and it
grows with every channel and stream option; config.py holds the file as a whole.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .config_base import StrictModel, distinct_partitions
from .etl.naming import symbol_path_value

CHANNELS = ("orderbook", "trades", "ticker")
# the depth-limited (partial, top-N snapshot) book streams each exchange offers, by levels per side
# (docs/operations.md, "Book depth at the source"): Binance `<sym>@depth<N>@100ms`, OKX `books5`
PARTIAL_BOOK_DEPTHS: dict[str, tuple[int, ...]] = {"binance": (5, 10, 20), "binanceus": (5, 10, 20), "okx": (5,)}


class ExchangeConfig(StrictModel):
    """One exchange: `ccxt` goes verbatim to the ccxt.pro constructor."""

    name: str = Field(..., description="ccxt.pro exchange id, e.g. binance, okx")
    ccxt: dict[str, Any] = Field(default_factory=dict)
    symbols: list[str] = Field(..., min_length=1)
    channels: list[Literal["orderbook", "trades", "ticker"]] = Field(default_factory=lambda: list(CHANNELS))
    book_depth: int = Field(50, ge=1, le=1000)
    book_stream: Literal["full", "partial"] = Field(
        "full", description="full: the diff stream, every delta in bronze; partial: the exchange's top-N snapshots")
    partial_depth: int | None = Field(None, description="levels per side of the partial stream (book_stream: partial)")

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

    @model_validator(mode="after")
    def _partial_stream(self) -> "ExchangeConfig":
        if self.book_stream == "full":
            if self.partial_depth is not None:
                raise ValueError("partial_depth is only used with book_stream: partial")
            return self
        allowed = PARTIAL_BOOK_DEPTHS.get(self.name)
        if allowed is None:
            offered = ", ".join(sorted(PARTIAL_BOOK_DEPTHS))
            raise ValueError(f"book_stream: partial: {self.name} has no partial book stream here (offered by {offered})")
        if self.partial_depth not in allowed:
            got = "none given" if self.partial_depth is None else f"not {self.partial_depth}"
            raise ValueError(f"partial_depth: {self.name} offers partial books of "
                             f"{', '.join(map(str, allowed))} levels per side ({got})")
        return self
