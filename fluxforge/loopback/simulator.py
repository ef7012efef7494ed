"""A random-walk market for any number of symbols, at a configurable update rate.

Why: collector, ETL and demo tests need an endless, realistic stream without the
internet.  Each symbol keeps a dense ladder of `depth` price levels a side
around an integer-tick mid price.  Every step the mid may move one tick (the
level it crosses is traded through), a few quantities near the top change,
and a Poisson number of trades hit the best levels and shrink them.  The step
becomes one BookUpdate whose update-id range counts the changed levels, as on
Binance, plus Trade events and a BookTicker when the best bid or ask changed; a
Ticker and the symbol's klines (quotes.py) are emitted every `ticker_interval` seconds.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .book import BookState, TickerStats
from .events import BookUpdate, Event, Trade, split_symbol
from .quotes import Candles, TopOfBook

# Plausible starting prices and Binance-like tick sizes so charts look familiar;
# any other base starts between 50 and 150 with a 0.01 tick.
START_PRICES = {"BTC": 60000.0, "ETH": 3000.0, "SOL": 150.0, "BNB": 550.0, "XRP": 0.6, "DOGE": 0.12}
TICK_SIZES = {"XRP": 0.0001, "DOGE": 0.00001}


@dataclass
class SimOptions:
    rate: float = 10.0  # book updates per second per symbol (Binance depth@100ms is 10/s)
    trades_per_update: float = 0.5  # mean of the Poisson number of trades per book update
    ticker_interval: float = 1.0  # seconds between ticker events per symbol
    depth: int = 100  # price levels per side
    seed: int | None = None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SimSymbol:
    """Integer-tick ladder of one symbol; produces (bids, asks, trades) per step."""

    def __init__(self, symbol: str, rng: random.Random, depth: int, first_trade_id: int):
        base, _ = split_symbol(symbol)
        price = START_PRICES.get(base, 50.0 + rng.random() * 100.0)
        self.tick = TICK_SIZES.get(base, 0.01)
        self.decimals = max(0, -int(f"{self.tick:e}".split("e")[1]))
        self.symbol, self.rng, self.depth = symbol, rng, depth
        self.mid = int(round(price / self.tick))
        self.bids = {self.mid - 1 - k: self._fresh_qty(k) for k in range(depth)}
        self.asks = {self.mid + 1 + k: self._fresh_qty(k) for k in range(depth)}
        self.next_trade_id = first_trade_id

    def _fresh_qty(self, distance: int) -> float:
        return round(self.rng.lognormvariate(-1.0, 1.0) * (1.0 + distance / 20.0), 5) or 0.001

    def px(self, tick: int) -> str:
        return f"{tick * self.tick:.{self.decimals}f}"

    def levels(self) -> tuple[list, list]:
        bids = [(self.px(t), f"{q:.5f}") for t, q in sorted(self.bids.items(), reverse=True)]
        asks = [(self.px(t), f"{q:.5f}") for t, q in sorted(self.asks.items())]
        return bids, asks

    def step(self, ts_ms: int, trades_mean: float) -> tuple[dict, dict, list[Trade]]:
        rng = self.rng
        bid_changes: dict[int, float] = {}
        ask_changes: dict[int, float] = {}
        trades: list[Trade] = []

        def set_level(book: dict, changes: dict, tick: int, qty: float) -> None:
            if qty <= 0:
                book.pop(tick, None)
            else:
                book[tick] = qty
            changes[tick] = max(qty, 0.0)

        if rng.random() < 0.3:  # mid moves a tick; the crossed level trades away
            if rng.random() < 0.5:
                self.mid += 1
                traded = self.asks.get(self.mid, 0.0)
                if traded:
                    trades.append(self._trade(self.mid, traded, "buy", ts_ms))
                set_level(self.asks, ask_changes, self.mid, 0)
                set_level(self.bids, bid_changes, self.mid - 1, self._fresh_qty(0))
                set_level(self.asks, ask_changes, self.mid + self.depth, self._fresh_qty(self.depth))
                set_level(self.bids, bid_changes, self.mid - 1 - self.depth, 0)
            else:
                self.mid -= 1
                traded = self.bids.get(self.mid, 0.0)
                if traded:
                    trades.append(self._trade(self.mid, traded, "sell", ts_ms))
                set_level(self.bids, bid_changes, self.mid, 0)
                set_level(self.asks, ask_changes, self.mid + 1, self._fresh_qty(0))
                set_level(self.bids, bid_changes, self.mid - self.depth, self._fresh_qty(self.depth))
                set_level(self.asks, ask_changes, self.mid + 1 + self.depth, 0)
        for _ in range(rng.randint(1, 4)):  # quote changes near the top
            distance = min(int(rng.expovariate(0.25)), self.depth - 1)
            if rng.random() < 0.5:
                set_level(self.bids, bid_changes, self.mid - 1 - distance, self._fresh_qty(distance))
            else:
                set_level(self.asks, ask_changes, self.mid + 1 + distance, self._fresh_qty(distance))
        for _ in range(_poisson(rng, trades_mean)):  # trades hit the best level
            if rng.random() < 0.5 and self.asks:
                tick = min(self.asks)
                qty = round(self.asks[tick] * rng.uniform(0.05, 0.6), 5) or 0.00001
                trades.append(self._trade(tick, qty, "buy", ts_ms))
                set_level(self.asks, ask_changes, tick, round(self.asks[tick] - qty, 5) or self._fresh_qty(0))
            elif self.bids:
                tick = max(self.bids)
                qty = round(self.bids[tick] * rng.uniform(0.05, 0.6), 5) or 0.00001
                trades.append(self._trade(tick, qty, "sell", ts_ms))
                set_level(self.bids, bid_changes, tick, round(self.bids[tick] - qty, 5) or self._fresh_qty(0))
        return bid_changes, ask_changes, trades

    def _trade(self, tick: int, qty: float, side: str, ts_ms: int) -> Trade:
        trade = Trade(self.symbol, self.next_trade_id, ts_ms, self.px(tick), f"{qty:.5f}", side)
        self.next_trade_id += 1
        return trade


def _poisson(rng: random.Random, mean: float) -> int:
    n, threshold, p = 0, pow(2.718281828459045, -mean), rng.random()
    while p > threshold and n < 50:
        p *= rng.random()
        n += 1
    return n


class SimMarket:
    """The `sim` source: owns the symbols' books and publishes their events at `rate`."""

    def __init__(self, symbols: list[str], options: SimOptions | None = None):
        self.options = options or SimOptions()
        if self.options.rate <= 0:
            raise ValueError("rate must be > 0")
        self.rng = random.Random(self.options.seed)
        self.symbols = list(dict.fromkeys(symbols))
        self.sims = {s: SimSymbol(s, self.rng, self.options.depth, 1_000_000 * (i + 1))
                     for i, s in enumerate(self.symbols)}
        self.books: dict[str, BookState] = {}
        self.tickers: dict[str, TickerStats] = {}
        ts = now_ms()
        for i, (symbol, sim) in enumerate(self.sims.items()):
            book = BookState(symbol)
            bids, asks = sim.levels()
            book.load(10_000_000 * (i + 1), bids, asks)
            self.books[symbol] = book
            self.tickers[symbol] = TickerStats(symbol, sim.mid * sim.tick, ts)
        self.top = TopOfBook()   # bookTicker after each book update that moved the best bid/ask
        self.candles = Candles()  # klines of every timeframe, pushed with the tickers
        self.slots = 0  # symbol steps taken so far (round-robin over symbols)
        self.frozen = False  # tests freeze the market to compare a client's book with ours

    def status(self) -> dict:
        return {"mode": "sim", "symbols": len(self.symbols), "steps": self.slots, "rate": self.options.rate}

    def price_tick(self, symbol: str) -> str:
        sim = self.sims[symbol]
        return f"{sim.tick:.{sim.decimals}f}"

    def step(self, symbol: str, publish: Callable[[Event], None]) -> None:
        """One book update (+ its trades) for `symbol`."""
        ts = now_ms()
        sim = self.sims[symbol]
        bid_changes, ask_changes, trades = sim.step(ts, self.options.trades_per_update)
        book = self.books[symbol]
        n = max(1, len(bid_changes) + len(ask_changes))
        publish(BookUpdate(
            symbol, book.last_update_id + 1, book.last_update_id + n, ts,
            [(sim.px(t), f"{q:.5f}") for t, q in bid_changes.items()],
            [(sim.px(t), f"{q:.5f}") for t, q in ask_changes.items()],
        ))
        quote = self.top.after_update(book)  # the hub applied the update to `book` while publishing it
        if quote is not None:
            publish(quote)
        for trade in trades:
            self.tickers[symbol].on_trade(trade)
            self.candles.on_trade(trade)
            publish(trade)

    async def run(self, publish: Callable[[Event], None]) -> None:
        """Step the symbols round-robin in evenly spaced slots (rate x symbols per second), so
        symbols update at different instants as on a real exchange, not in one burst."""
        loop = asyncio.get_running_loop()
        slot_rate = self.options.rate * len(self.symbols)
        start = loop.time()
        interval = self.options.ticker_interval
        next_ticker = {s: start + i * interval / len(self.symbols) for i, s in enumerate(self.symbols)}
        while True:
            if self.frozen:
                await asyncio.sleep(0.02)
                start = loop.time() - self.slots / slot_rate  # no catch-up burst afterwards
                continue
            now = loop.time()
            due = int((now - start) * slot_rate) + 1 - self.slots
            for _ in range(min(due, 1000)):  # catch up after a slow loop, but stay responsive
                self.step(self.symbols[self.slots % len(self.symbols)], publish)
                self.slots += 1
            for symbol, due_at in next_ticker.items():
                if now >= due_at:
                    ts = now_ms()
                    publish(self.tickers[symbol].ticker(self.books[symbol], ts))
                    for kline in self.candles.updates(symbol, ts):
                        publish(kline)
                    next_ticker[symbol] = max(due_at + interval, now)
            next_slot = start + self.slots / slot_rate
            await asyncio.sleep(max(0.0, min(next_slot, *next_ticker.values()) - loop.time()))
