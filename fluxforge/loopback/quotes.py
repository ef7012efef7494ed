"""Best bid/ask and candle streams derived from a source's book and trades (Binance
`bookTicker` and `kline_<interval>`).

Why derived, not simulated apart: the quotes and candles a client receives must agree
with the book and trades it receives on the same connection, as on the exchange.
`TopOfBook` turns each applied book update into a `BookTicker` when the best bid or
ask (price or size) changed; `Candles` folds trades into one open candle per
(symbol, timeframe) and, on each push (every `ticker_interval`, as Binance pushes a
kline every one to two seconds), sends the open candle again and the final state
(`closed`) of any candle that ended since.  A period without trades yields a candle
at the previous close with zero volume, as Binance sends.
"""
from __future__ import annotations

from dataclasses import dataclass

from .book import BookState
from .events import BookTicker, Kline, Trade

SECOND, MINUTE, HOUR, DAY = 1_000, 60_000, 3_600_000, 86_400_000
# Binance kline intervals aligned to the epoch (3d/1w/1M follow calendar rules: not served)
TIMEFRAME_MS = {"1s": SECOND, "1m": MINUTE, "3m": 3 * MINUTE, "5m": 5 * MINUTE, "15m": 15 * MINUTE,
                "30m": 30 * MINUTE, "1h": HOUR, "2h": 2 * HOUR, "4h": 4 * HOUR, "6h": 6 * HOUR,
                "8h": 8 * HOUR, "12h": 12 * HOUR, "1d": DAY}


class TopOfBook:
    """A `BookTicker` for each book update that changed the best bid or ask."""

    def __init__(self) -> None:
        self.last: dict[str, tuple] = {}

    def after_update(self, book: BookState) -> BookTicker | None:
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None or self.last.get(book.symbol) == (bid, ask):
            return None
        self.last[book.symbol] = (bid, ask)
        return BookTicker(book.symbol, book.last_update_id, bid[0], bid[1], ask[0], ask[1])


@dataclass(slots=True)
class _Candle:
    open_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: float = 0.0
    quote_volume: float = 0.0
    first_trade_id: int = -1
    last_trade_id: int = -1
    trades: int = 0

    def add(self, trade: Trade) -> None:
        px = float(trade.price)
        if self.trades == 0:
            self.open = self.high = self.low = trade.price
            self.first_trade_id = trade.trade_id
        elif px > float(self.high):
            self.high = trade.price
        elif px < float(self.low):
            self.low = trade.price
        self.close = trade.price
        self.volume += float(trade.amount)
        self.quote_volume += px * float(trade.amount)
        self.last_trade_id = trade.trade_id
        self.trades += 1


class Candles:
    """The candles of every (symbol, timeframe), built from trades in exchange time."""

    def __init__(self, timeframes: dict[str, int] = TIMEFRAME_MS):
        self.timeframes = dict(timeframes)
        self.open: dict[tuple[str, str], _Candle] = {}
        self.ended: dict[str, list[tuple[str, _Candle]]] = {}  # symbol -> candles ended, final state unsent

    def _roll(self, symbol: str, tf: str, period_ms: int, start: int) -> _Candle:
        """The candle of `symbol`/`tf` starting at `start`, ending (and queueing) the previous one."""
        candle = self.open.get((symbol, tf))
        if candle is not None and candle.open_ms < start:
            self.ended.setdefault(symbol, []).append((tf, candle))
            candle = None
        if candle is None:
            last = self.open.get((symbol, tf))
            close = last.close if last is not None else "0"
            candle = self.open[(symbol, tf)] = _Candle(start, close, close, close, close)
        return candle

    def on_trade(self, trade: Trade) -> None:
        for tf, period_ms in self.timeframes.items():
            start = trade.ts_ms - trade.ts_ms % period_ms
            candle = self.open.get((trade.symbol, tf))
            if candle is None or candle.open_ms < start:
                candle = self._roll(trade.symbol, tf, period_ms, start)
            candle.add(trade)

    def updates(self, symbol: str, now_ms: int) -> list[Kline]:
        """The klines to push now for `symbol`: ended candles (final) first, then each open one."""
        out = []
        for tf, period_ms in self.timeframes.items():
            candle = self.open.get((symbol, tf))
            if candle is not None and candle.open_ms + period_ms <= now_ms:
                self._roll(symbol, tf, period_ms, now_ms - now_ms % period_ms)
        for tf, candle in self.ended.pop(symbol, []):
            out.append(self._kline(symbol, tf, candle, now_ms, closed=True))
        for tf in self.timeframes:
            candle = self.open.get((symbol, tf))
            if candle is not None:
                out.append(self._kline(symbol, tf, candle, now_ms, closed=False))
        return out

    def _kline(self, symbol: str, tf: str, c: _Candle, now_ms: int, closed: bool) -> Kline:
        return Kline(symbol, tf, now_ms, c.open_ms, c.open_ms + self.timeframes[tf] - 1, c.open, c.high, c.low,
                     c.close, f"{c.volume:.8f}", f"{c.quote_volume:.8f}", c.first_trade_id, c.last_trade_id,
                     c.trades, closed)
