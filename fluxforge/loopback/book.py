"""The loopback exchange's authoritative per-symbol state: order book and session ticker.

Why it exists: REST depth snapshots must be consistent with the update ids
already streamed (ccxt discards diffs with u <= lastUpdateId and requires the
next one to straddle it), so every published BookUpdate is applied here first
and snapshots are cut from this state in the same event loop.
"""
from __future__ import annotations

from .events import BookUpdate, Level, Ticker, Trade


class BookState:
    """Price levels of one symbol plus the last applied update id."""

    __slots__ = ("symbol", "bids", "asks", "last_update_id", "ts_ms")

    def __init__(self, symbol: str, last_update_id: int = 0):
        self.symbol = symbol
        self.bids: dict[float, Level] = {}
        self.asks: dict[float, Level] = {}
        self.last_update_id = last_update_id
        self.ts_ms = 0

    def load(self, last_update_id: int, bids: list[Level], asks: list[Level], ts_ms: int = 0) -> None:
        """Replace the book with a full snapshot (e.g. a capture's REST line) of exchange time `ts_ms`."""
        self.bids = {float(p): (p, q) for p, q in bids if float(q) != 0.0}
        self.asks = {float(p): (p, q) for p, q in asks if float(q) != 0.0}
        self.last_update_id = last_update_id
        self.ts_ms = ts_ms

    def apply(self, update: BookUpdate) -> None:
        for side, levels in ((self.bids, update.bids), (self.asks, update.asks)):
            for p, q in levels:
                key = float(p)
                if float(q) == 0.0:
                    side.pop(key, None)
                else:
                    side[key] = (p, q)
        self.last_update_id = update.last_id
        self.ts_ms = update.ts_ms

    def snapshot(self, limit: int | None = None) -> tuple[int, list[Level], list[Level]]:
        """(lastUpdateId, bids best first, asks best first), at most `limit` levels a side."""
        bids = [self.bids[k] for k in sorted(self.bids, reverse=True)[:limit]]
        asks = [self.asks[k] for k in sorted(self.asks)[:limit]]
        return self.last_update_id, bids, asks

    def best_bid(self) -> Level | None:
        return self.bids[max(self.bids)] if self.bids else None

    def best_ask(self) -> Level | None:
        return self.asks[min(self.asks)] if self.asks else None


class TickerStats:
    """Session open/high/low/volume of one symbol, turned into Ticker events."""

    def __init__(self, symbol: str, open_price: float, ts_ms: int):
        self.symbol = symbol
        self.open = self.high = self.low = self.last = open_price
        self.last_qty = 0.0
        self.base_volume = self.quote_volume = 0.0
        self.first_trade_id = -1
        self.last_trade_id = -1
        self.count = 0
        self.open_ts_ms = ts_ms

    def on_trade(self, trade: Trade) -> None:
        px, qty = float(trade.price), float(trade.amount)
        if self.count == 0:
            self.open = self.high = self.low = px
            self.first_trade_id = trade.trade_id
        self.high = max(self.high, px)
        self.low = min(self.low, px)
        self.last, self.last_qty = px, qty
        self.base_volume += qty
        self.quote_volume += px * qty
        self.last_trade_id = trade.trade_id
        self.count += 1

    def ticker(self, book: BookState, ts_ms: int) -> Ticker:
        bid = book.best_bid() or ("0", "0")
        ask = book.best_ask() or ("0", "0")
        return Ticker(
            symbol=self.symbol, ts_ms=ts_ms, open=self.open, high=self.high, low=self.low,
            last=self.last, last_qty=self.last_qty, bid=bid[0], bid_qty=bid[1], ask=ask[0],
            ask_qty=ask[1], base_volume=self.base_volume, quote_volume=self.quote_volume,
            first_trade_id=self.first_trade_id, last_trade_id=self.last_trade_id,
            trade_count=self.count, open_ts_ms=self.open_ts_ms,
        )
