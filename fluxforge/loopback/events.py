"""Protocol-neutral market events that the loopback exchange publishes.

Why a neutral form: the same simulated or replayed market must reach ccxt
through more than one wire protocol (Binance spot, OKX v5).  Sources (the
simulator, the capture replay) produce these events; protocol modules only
encode them.  Prices and quantities stay decimal *strings* so that what goes
on the wire is exactly what a capture held, with no float round-trip.
"""
from __future__ import annotations

from dataclasses import dataclass, field

Level = tuple[str, str]  # (price, quantity) as decimal strings; quantity "0" removes the level

@dataclass(slots=True)
class BookUpdate:
    """A diff of the order book covering update ids first_id..last_id (Binance U..u)."""

    symbol: str  # ccxt unified form, e.g. "BTC/USDT"
    first_id: int
    last_id: int
    ts_ms: int
    bids: list[Level] = field(default_factory=list)
    asks: list[Level] = field(default_factory=list)
    channel: str = "orderbook"


@dataclass(slots=True)
class Trade:
    symbol: str
    trade_id: int
    ts_ms: int
    price: str
    amount: str
    side: str  # taker side: "buy" or "sell"
    channel: str = "trades"


@dataclass(slots=True)
class Ticker:
    """A rolling ticker since the source started (open/high/low/volume over the session)."""

    symbol: str
    ts_ms: int
    open: float
    high: float
    low: float
    last: float
    last_qty: float
    bid: str
    bid_qty: str
    ask: str
    ask_qty: str
    base_volume: float
    quote_volume: float
    first_trade_id: int
    last_trade_id: int
    trade_count: int
    open_ts_ms: int
    channel: str = "ticker"


@dataclass(slots=True)
class BookTicker:
    """The best bid and ask after book update `update_id` (Binance `bookTicker`)."""

    symbol: str
    update_id: int
    bid: str
    bid_qty: str
    ask: str
    ask_qty: str
    channel: str = "bidsasks"


@dataclass(slots=True)
class Kline:
    """The current state of one candle (re-sent while open; `closed` on its final update)."""

    symbol: str
    timeframe: str  # Binance interval == ccxt timeframe: 1s, 1m, 5m, 1h, 1d, ...
    ts_ms: int      # event time
    open_ms: int
    close_ms: int   # last ms of the candle
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    first_trade_id: int
    last_trade_id: int
    trades: int
    closed: bool
    channel: str = "ohlcv"


Event = BookUpdate | Trade | Ticker | BookTicker | Kline


def sent_id(event: Event) -> int | None:
    """The id the sent-log keeps per message: book update id, trade id, bookTicker `u`, candle open time."""
    if isinstance(event, BookUpdate):
        return event.last_id
    if isinstance(event, BookTicker):
        return event.update_id
    if isinstance(event, Kline):
        return event.open_ms
    return getattr(event, "trade_id", None)


def sent_values(event: Event) -> tuple | None:
    """What the sent-log keeps of a message's values (channels whose rows carry no id of their own)."""
    if isinstance(event, BookTicker):
        return (event.bid, event.bid_qty, event.ask, event.ask_qty)
    if isinstance(event, Kline):
        return (event.timeframe, event.open_ms, event.open, event.high, event.low, event.close, event.volume)
    return None


def split_symbol(symbol: str) -> tuple[str, str]:
    """'BTC/USDT' -> ('BTC', 'USDT'); raises ValueError on anything else."""
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote or not (base + quote).isalnum():
        raise ValueError(f"symbol must look like BASE/QUOTE, got {symbol!r}")
    return base.upper(), quote.upper()


def binance_id(symbol: str) -> str:
    base, quote = split_symbol(symbol)
    return base + quote


def okx_inst_id(symbol: str) -> str:
    base, quote = split_symbol(symbol)
    return f"{base}-{quote}"
