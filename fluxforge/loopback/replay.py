"""The `replay` source: plays `<ns> <json>` Binance captures back through any protocol.

Why: real books and trades (shared/data/binance-spot/) exercise the collector
and the features with genuine microstructure.  Each file's REST snapshot line
(`{"lastUpdateId":..}`) seeds the book that `/api/v3/depth` serves; diffs with
`u <= lastUpdateId` are skipped and the first applied one straddles it, exactly
Binance's sync rule, even when the capture received it before the snapshot.
Several files are merged by receive time; pacing follows the receive times
divided by `speed` (0 = as fast as the loop allows).  Exchange timestamps are
kept as captured, so replayed rows carry the capture's dates.  Tickers are
synthesized every `ticker_interval` seconds of capture time from the trades and
book (captures hold bookTicker, not 24hrTicker), and so are klines (quotes.py);
bookTicker lines are replayed as they were captured.
"""
from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterator
from pathlib import Path

from .book import BookState, TickerStats
from .capture import BadLine, CaptureLine, iter_capture, unified_symbol
from .events import BookTicker, BookUpdate, Event, Trade
from .quotes import Candles

SEED_SCAN_LINES = 10_000
MAX_BAD_LINES_SHOWN = 20


def message_symbol(message: dict) -> str | None:
    data = message.get("data", message)
    market_id = data.get("s") if isinstance(data, dict) else None
    if market_id is None and isinstance(message.get("stream"), str):
        market_id = message["stream"].partition("@")[0]
    return unified_symbol(market_id) if market_id else None


class CaptureReplay:
    def __init__(self, files: list[str | Path], speed: float = 1.0, ticker_interval: float = 1.0):
        if not files:
            raise ValueError("replay needs at least one capture file")
        if speed < 0:
            raise ValueError("speed must be >= 0 (0 = as fast as possible)")
        self.files = [str(f) for f in files]
        self.speed, self.ticker_interval_ms = speed, int(ticker_interval * 1000)
        self.books: dict[str, BookState] = {}
        self.tickers: dict[str, TickerStats] = {}
        self.ticks: dict[str, str] = {}
        self.file_symbol: dict[str, str] = {}
        self.bad_lines: list[str] = []
        self.bad_count = self.capture_gaps = self.events = 0
        self.finished = self.frozen = False
        self.candles = Candles()
        for path in self.files:
            self._seed(path)
        self.symbols = list(self.books)

    def _seed(self, path: str) -> None:
        if not Path(path).is_file():
            raise ValueError(f"capture file not found: {path}")
        symbol = snapshot = None
        for n, line in enumerate(iter_capture(path)):
            if n >= SEED_SCAN_LINES or (symbol and snapshot):
                break
            if isinstance(line, BadLine):
                continue
            if "lastUpdateId" in line.message and snapshot is None:
                snapshot, snapshot_ms = line.message, line.recv_ns // 1_000_000
            elif symbol is None:
                symbol = message_symbol(line.message)
        if symbol is None or snapshot is None:
            raise ValueError(f"{path}: no market messages and REST depth snapshot line "
                             f"({{\"lastUpdateId\":..}}) in its first {SEED_SCAN_LINES} lines")
        if symbol in self.books:
            raise ValueError(f"{path}: {symbol} already comes from another capture file")
        book = BookState(symbol)
        # the book's time until the first update: when the capture got the snapshot (in capture
        # time, so an OKX snapshot of the seeded book is not stamped with today's clock)
        book.load(int(snapshot["lastUpdateId"]), [tuple(x) for x in snapshot["bids"]],
                  [tuple(x) for x in snapshot["asks"]], ts_ms=snapshot_ms)
        self.books[symbol] = book
        self.file_symbol[path] = symbol
        prices = [p for p, _ in snapshot["bids"][:50] + snapshot["asks"][:50]]
        decimals = max((len(p.partition(".")[2].rstrip("0")) for p in prices), default=2)
        self.ticks[symbol] = f"{10 ** -decimals:.{decimals}f}"
        best_bid, best_ask = book.best_bid(), book.best_ask()
        mid = (float(best_bid[0]) + float(best_ask[0])) / 2 if best_bid and best_ask else 0.0
        self.tickers[symbol] = TickerStats(symbol, mid, 0)

    def price_tick(self, symbol: str) -> str:
        return self.ticks[symbol]

    def status(self) -> dict:
        return {"mode": "replay", "files": self.files, "events": self.events, "finished": self.finished,
                "capture_gaps": self.capture_gaps, "bad_lines": self.bad_count,
                "first_bad_lines": list(self.bad_lines)}

    def _events(self, path: str) -> Iterator[tuple[int, Event]]:
        symbol = self.file_symbol[path]
        for line in iter_capture(path):
            if isinstance(line, BadLine):
                self.bad_count += 1
                if len(self.bad_lines) < MAX_BAD_LINES_SHOWN:
                    self.bad_lines.append(str(line))
                continue
            event = self._event(symbol, line)
            if event is not None:
                yield line.recv_ns, event

    def _event(self, symbol: str, line: CaptureLine) -> Event | None:
        data = line.message.get("data", line.message)
        kind = data.get("e") if isinstance(data, dict) else None
        try:
            if kind == "depthUpdate":
                return BookUpdate(symbol, int(data["U"]), int(data["u"]), int(data["E"]),
                                  [tuple(x) for x in data["b"]], [tuple(x) for x in data["a"]])
            if kind == "trade":
                return Trade(symbol, int(data["t"]), int(data["T"]), data["p"], data["q"],
                             "sell" if data["m"] else "buy")
            if kind is None and isinstance(data, dict) and "u" in data and "b" in data and "a" in data:
                return BookTicker(symbol, int(data["u"]), data["b"], data["B"], data["a"], data["A"])
        except (KeyError, TypeError, ValueError) as e:
            self.bad_count += 1
            if len(self.bad_lines) < MAX_BAD_LINES_SHOWN:
                self.bad_lines.append(f"{line.path}:{line.line_no}: bad {kind} message ({e!r})")
        return None

    async def run(self, publish: Callable[[Event], None]) -> None:
        loop = asyncio.get_running_loop()
        merged = heapq.merge(*(self._events(p) for p in self.files), key=lambda item: item[0])
        next_ticker_ms: dict[str, int] = {}
        first_ns = start = None
        for recv_ns, event in merged:
            while self.frozen:
                frozen_at = loop.time()
                await asyncio.sleep(0.02)
                if start is not None:
                    start += loop.time() - frozen_at  # the replay clock stops while frozen
            if first_ns is None:
                first_ns, start = recv_ns, loop.time()
            if self.speed > 0:
                delay = start + (recv_ns - first_ns) / 1e9 / self.speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif self.events % 200 == 0:
                await asyncio.sleep(0)  # as fast as possible, but let clients and HTTP run
            self.events += 1
            symbol = event.symbol
            if isinstance(event, BookTicker):
                publish(event)  # no exchange time of its own: paced, not a ticker clock
                continue
            if symbol not in next_ticker_ms:
                self.tickers[symbol].open_ts_ms = event.ts_ms
            if isinstance(event, BookUpdate):
                book = self.books[symbol]
                if event.last_id <= book.last_update_id:
                    continue  # older than the book we serve (before the snapshot)
                if event.first_id > book.last_update_id + 1:
                    self.capture_gaps += 1  # the capture itself has a hole: replay it faithfully
            else:
                self.tickers[symbol].on_trade(event)
                self.candles.on_trade(event)
            publish(event)
            if event.ts_ms >= next_ticker_ms.get(symbol, 0):
                publish(self.tickers[symbol].ticker(self.books[symbol], event.ts_ms))
                for kline in self.candles.updates(symbol, event.ts_ms):
                    publish(kline)
                next_ticker_ms[symbol] = event.ts_ms + self.ticker_interval_ms
        self.finished = True
