"""One `exchanges:` entry of the configuration: which ccxt.pro exchange, which symbols,
which channels, how deep a book.

Why a module of its own: the exchange entry is where a user's market layout lives and it
grows with every channel and stream option; config.py holds the file as a whole.

`channels` is a list (every channel for every symbol of `symbols`) or a map channel ->
list of symbols (or `all`: the entry's `symbols`), so "trades for 50 symbols, books for
10" is one entry.  A channel list names its own symbols: they need not be repeated in
`symbols`, which is then optional.  Once loaded, `all` is spelled out and `symbols` lists every symbol the entry
collects (the given ones first, then the channel lists' others), so everything that asks
"which symbols" (status, the collector) reads one field; `channel_symbols()` says which
channel of which.  A symbol in `symbols` that no channel collects is an error: writing
`symbols: [50]` with `channels: {orderbook: [10]}` would otherwise silently drop trades.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .config_base import StrictModel, distinct_partitions
from .etl.naming import symbol_path_value

CHANNELS = ("orderbook", "trades", "ticker", "ohlcv", "bidsasks")
DEFAULT_CHANNELS = ("orderbook", "trades", "ticker")
TIMEFRAME = re.compile(r"[1-9][0-9]*[smhdwMy]")  # ccxt's unified timeframe form: 1m, 4h, 1d, 1M
# the depth-limited (partial, top-N snapshot) book streams each exchange offers, by levels per side
# (docs/operations.md, "Book depth at the source"): Binance `<sym>@depth<N>@100ms`, OKX `books5`
PARTIAL_BOOK_DEPTHS: dict[str, tuple[int, ...]] = {"binance": (5, 10, 20), "binanceus": (5, 10, 20), "okx": (5,)}
ALL = "all"  # a channel map value meaning "the entry's `symbols`"
# Exchanges whose books default to one watch per symbol (`isolate_books`).  Coinbase: its
# level2 subscribe names products, and one refused product (delisted, halted, not served on
# the WebSocket) fails the whole grouped subscribe, so every book of the group stops; the
# Daedalus collector also found its shared ping-pong connection fragile.  Elsewhere a grouped
# watch is one subscribe per symbol anyway (Binance, OKX, Kraken) and a symbol's error is
# rejected on that symbol alone, so grouping costs nothing and saves requests.
ISOLATE_BOOKS_BY_DEFAULT = frozenset({"coinbase"})


def check_unified(symbol: Any, where: str) -> str:
    """`symbol` if it is a ccxt unified symbol 'BASE/QUOTE' (perhaps ':SETTLE'), else a clear error."""
    base, slash, quote = str(symbol).partition("/") if isinstance(symbol, str) else ("", "", "")
    if not slash or not base.strip() or not quote.strip() or symbol != symbol.strip():
        raise ValueError(f"{where}: {symbol!r} is not a ccxt unified symbol like 'BTC/USDT'")
    return symbol


class ExchangeConfig(StrictModel):
    """One exchange: `ccxt` goes verbatim to the ccxt.pro constructor."""

    name: str = Field(..., description="ccxt.pro exchange id, e.g. binance, okx")
    ccxt: dict[str, Any] = Field(default_factory=dict)
    symbols: list[str] = Field(..., min_length=1)
    channels: list[str] | dict[str, list[str] | str] = Field(default_factory=lambda: list(DEFAULT_CHANNELS))
    book_depth: int = Field(50, ge=1, le=1000)
    ohlcv_timeframes: list[str] = Field(default_factory=lambda: ["1m"], min_length=1)
    book_stream: Literal["full", "partial"] = Field(
        "full", description="full: the diff stream, every delta in bronze; partial: the exchange's top-N snapshots")
    partial_depth: int | None = Field(None, description="levels per side of the partial stream (book_stream: partial)")
    aliases: dict[str, str] = Field(default_factory=dict, description="symbol as the exchange reports it -> "
                                    "the configured symbol its rows are recorded under")
    isolate_books: bool = Field(False, description="one book watch per symbol instead of one grouped watch "
                                "(default: true for exchanges in ISOLATE_BOOKS_BY_DEFAULT)")

    @model_validator(mode="before")
    @classmethod
    def _fill_in(cls, data: Any) -> Any:
        """Defaults that depend on other keys: `isolate_books` by exchange, `symbols` from a channel map."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "isolate_books" not in data:
            name = data.get("name")
            data["isolate_books"] = isinstance(name, str) and name in ISOLATE_BOOKS_BY_DEFAULT
        channels, given = data.get("channels"), data.get("symbols")
        if isinstance(channels, dict) and (given is None or isinstance(given, list)):
            if ALL in channels.values():
                if given is None:
                    raise ValueError(f"channels: '{ALL}' stands for the entry's `symbols`, which are not given")
                data["channels"] = channels = {ch: list(given) if v == ALL else v for ch, v in channels.items()}
            union = list(given or [])
            for listed in channels.values():
                if isinstance(listed, list):  # only plausible symbols: the channels check names bad ones
                    union += [s for s in listed if isinstance(s, str) and "/" in s and s not in union]
            if union:
                data["symbols"] = union
        return data

    @field_validator("symbols")
    @classmethod
    def _unified(cls, v: list[str]) -> list[str]:
        for s in v:
            check_unified(s, "symbols")
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

    @field_validator("channels", mode="before")
    @classmethod
    def _shape(cls, v: Any) -> Any:
        if not isinstance(v, (list, dict)):
            raise ValueError(f"a list of channels ({', '.join(CHANNELS)}) or a map channel -> list of symbols "
                             f"or '{ALL}', not {v!r}")
        for name in (v if isinstance(v, list) else v.keys()):
            if name not in CHANNELS:
                raise ValueError(f"{name!r} is not a channel (one of {', '.join(CHANNELS)})")
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError("channels must be unique")
        return v

    @field_validator("channels")
    @classmethod
    def _channel_lists(cls, v: list[str] | dict[str, list[str] | str]) -> list[str] | dict[str, list[str] | str]:
        if isinstance(v, list):
            return v
        if not v:
            raise ValueError("the channel map is empty: name at least one channel")
        for channel, listed in v.items():
            if isinstance(listed, str):
                if listed != ALL:
                    raise ValueError(f"{channel}: a list of symbols or '{ALL}', not {listed!r}")
                continue
            if not listed:
                raise ValueError(f"{channel}: empty symbol list (leave the channel out to not collect it)")
            for s in listed:
                check_unified(s, channel)
            if len(set(listed)) != len(listed):
                raise ValueError(f"{channel}: symbols must be unique")
        return v

    @model_validator(mode="after")
    def _layout(self) -> "ExchangeConfig":
        if isinstance(self.channels, dict):
            collected = {s for listed in self.channel_symbols().values() for s in listed}
            unused = [s for s in self.symbols if s not in collected]
            if unused:
                raise ValueError(f"symbols {unused} are collected by no channel: add them to a channel's list, "
                                 f"or write `<channel>: {ALL}` for the channels that take every symbol")
        for reported, ours in self.aliases.items():
            check_unified(reported, "aliases")
            check_unified(ours, f"aliases.{reported}")
            if ours not in self.symbols:
                raise ValueError(f"aliases.{reported}: {ours!r} is not one of this exchange's symbols {self.symbols}")
            if reported in self.symbols:
                raise ValueError(f"aliases.{reported}: {reported!r} is itself a configured symbol; its rows "
                                 f"cannot also be recorded as {ours!r}")
        return self

    def channel_symbols(self) -> dict[str, list[str]]:
        """Channel -> the symbols collected on it, in the order of CHANNELS; channels not collected are absent."""
        if isinstance(self.channels, list):
            return {ch: list(self.symbols) for ch in CHANNELS if ch in self.channels}
        return {ch: list(self.symbols) if self.channels[ch] == ALL else list(self.channels[ch])
                for ch in CHANNELS if ch in self.channels}

    @field_validator("ohlcv_timeframes")
    @classmethod
    def _timeframes(cls, v: list[str]) -> list[str]:
        for tf in v:
            if not TIMEFRAME.fullmatch(tf):
                raise ValueError(f"{tf!r} is not a ccxt timeframe like '1m', '5m', '1h', '1d'")
        if len(set(v)) != len(v):
            raise ValueError("ohlcv_timeframes must be unique")
        return v
