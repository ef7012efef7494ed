"""Where every observed market-data update and stream event becomes a queued row.

Why one place: the ccxt tap, the stream watchers and the snapshot gate all
report here, so counting (messages, per-symbol freshness, gaps, drops) and the
row/event accounting cannot disagree, and the status line and the tests read
the same numbers.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from ..logs import get_logger
from .row_queue import ROW_BYTES, RowQueue, row_bytes
from .rows import BadRow, BidAskBuffer, BookBuffer, OhlcvBuffer, TickerBuffer, TradeBuffer

log = get_logger("fluxforge.collector")


class Recorder:
    def __init__(self, queue: RowQueue, depths: dict[str, int]):
        self.queue = queue
        self.depths = depths                     # exchange -> book_depth
        self.messages = 0                        # data rows accepted
        # (exchange, channel, symbol) -> time.monotonic_ns() of its last row: freshness for the status
        # line and the metrics, which a step of the wall clock (NTP, `date -s`) must not move
        self.last_seen: dict[tuple[str, str, str], int] = {}
        self.event_counts: Counter[str] = Counter()
        self.bad_rows = 0                        # data rows dropped for a value their column cannot hold
        self.started = time.monotonic()
        self.last_data: float | None = None      # monotonic time of the last data message (any stream)
        self._crossed: set[tuple[str, str]] = set()
        # the book object last recorded per (exchange, symbol): held, not its id(), because a book
        # ccxt dropped (gap) is freed and its replacement may get the same id()
        self._books: dict[tuple[str, str], Any] = {}
        self._snapshot_pending: set[tuple[str, str]] = set()
        self._needs_snapshot: set[tuple[str, str]] = set()  # a book row was dropped: re-initialise
        self.last_nonce: dict[tuple[str, str], int | None] = {}  # (exchange, symbol) -> nonce of the last book row
        self.unrequested_rows = 0                # rows for a (channel, symbol) nobody configured: not recorded
        self._unrequested: Counter[tuple[str, str, str]] = Counter()
        self._unrequested_reported: dict[tuple[str, str, str], int] = {}

    # -- data rows -------------------------------------------------------------
    def book(self, exchange: str, symbol: str, book: Any, recv_ns: int) -> None:
        """A whole book from an exchange whose messages the tap cannot see: its top `book_depth` levels."""
        key = (exchange, symbol)
        if self._books.get(key) is not book or key in self._snapshot_pending:
            reason = "rest snapshot" if key in self._snapshot_pending else "new book"
            self._snapshot_pending.discard(key)
            self._books[key] = book
            self.event(exchange, symbol, "orderbook", "resync", reason)
        self._check_crossed(exchange, symbol, book)
        depth = self.depths[exchange]
        levels = min(len(book["bids"]), depth) + min(len(book["asks"]), depth)
        self._admit(exchange, "orderbook", symbol, BookBuffer.prepare, book, depth, recv_ns, nbytes=row_bytes(levels))

    def book_snapshot(self, exchange: str, symbol: str, book: Any, recv_ns: int, prev_nonce: int | None,
                      checksum: int | None, reason: str | None = None) -> None:
        """`book` was (re)initialised (REST or WS snapshot): a `resync` event and a snapshot row of all of it."""
        key = (exchange, symbol)
        if reason is None:
            reason = "rest snapshot" if key in self._snapshot_pending else "ws snapshot"
        self.event(exchange, symbol, "orderbook", "resync", reason)
        self._snapshot_row(key, book, book.get("timestamp"), recv_ns, prev_nonce, checksum)

    def book_partial(self, exchange: str, symbol: str, book: Any, recv_ns: int) -> None:
        """A depth-limited stream's message (`book_stream: partial`): the exchange's whole top-N book,
        a snapshot row.  Consecutive rows continue one stream, so `resync` only when it starts (a new
        book); a row without exchange time (Binance spot sends none) takes the receive time, in ms."""
        key = (exchange, symbol)
        if self._books.get(key) is not book:
            self.event(exchange, symbol, "orderbook", "resync", "partial stream")
        ts = book.get("timestamp")
        self._snapshot_row(key, book, recv_ns // 1_000_000 if ts is None else ts, recv_ns, None, None)

    def _snapshot_row(self, key: tuple[str, str], book: Any, timestamp: Any, recv_ns: int,
                      prev_nonce: int | None, checksum: int | None) -> None:
        exchange, symbol = key
        self._snapshot_pending.discard(key)
        self._needs_snapshot.discard(key)
        self._books[key] = book
        self._check_crossed(exchange, symbol, book)
        self.last_nonce[key] = book.get("nonce")
        bids, asks = book["bids"], book["asks"]
        if not self._admit(exchange, "orderbook", symbol, BookBuffer.prepare_snapshot, timestamp, recv_ns,
                           book.get("nonce"), prev_nonce, checksum, bids, asks,
                           nbytes=row_bytes(len(bids) + len(asks))):
            self._needs_snapshot.add(key)

    def book_delta(self, exchange: str, symbol: str, book: Any, recv_ns: int, prev_nonce: int | None,
                   checksum: int | None, bid_log: list, ask_log: list) -> None:
        """One exchange message's levels (flat `px, sz, ...`, size 0 = delete) as ccxt applied them to `book`."""
        key = (exchange, symbol)
        if key in self._needs_snapshot:
            # an earlier row of this book was dropped (queue full): bronze restarts from ccxt's whole book
            self.book_snapshot(exchange, symbol, book, recv_ns, prev_nonce, checksum, "after dropped rows")
            return
        self._check_crossed(exchange, symbol, book)
        self.last_nonce[key] = book.get("nonce")
        if not self._admit(exchange, "orderbook", symbol, BookBuffer.prepare_delta, book.get("timestamp"), recv_ns,
                           book.get("nonce"), prev_nonce, checksum, bid_log, ask_log,
                           nbytes=row_bytes((len(bid_log) + len(ask_log)) >> 1)):
            self._needs_snapshot.add(key)

    def book_rows_lost(self, books: Any) -> None:
        """Admitted book rows of `books` ((exchange, symbol) pairs) were lost after all (disk full,
        unconvertible): the next message of each is written as a snapshot, so bronze rebuilds again."""
        self._needs_snapshot.update(books)

    def trade(self, exchange: str, symbol: str, trade: dict, recv_ns: int) -> None:
        self._admit(exchange, "trades", symbol, TradeBuffer.prepare, trade, recv_ns)

    def ticker(self, exchange: str, symbol: str, ticker: dict, recv_ns: int) -> None:
        self._admit(exchange, "ticker", symbol, TickerBuffer.prepare, ticker, recv_ns)

    def candle(self, exchange: str, symbol: str, timeframe: str, candle: list, recv_ns: int) -> None:
        """One candle update (`[open ms, o, h, l, c, v]`), as received: an open candle recurs until it closes."""
        self._admit(exchange, "ohlcv", symbol, OhlcvBuffer.prepare, timeframe, candle, recv_ns)

    def bid_ask(self, exchange: str, symbol: str, ticker: dict, recv_ns: int) -> None:
        self._admit(exchange, "bidsasks", symbol, BidAskBuffer.prepare, ticker, recv_ns)

    def _admit(self, exchange: str, channel: str, symbol: str, prepare, *args, nbytes: int = ROW_BYTES) -> bool:
        """Check the row's values first (a bad row is dropped alone, with a reason), then queue it.

        False when the row was not queued (refused or dropped): a book must then restart from a snapshot."""
        seen = time.monotonic_ns()  # the stream delivered data, whatever becomes of the row
        self.last_seen[(exchange, channel, symbol)] = seen
        self.last_data = seen / 1e9
        try:
            row = prepare(exchange, symbol, *args)
        except BadRow as e:
            self.bad_rows += 1
            self.event(exchange, symbol, channel, "dropped", f"unconvertible value: {e}", 1)
            return False
        if self.queue.admit(exchange, channel, symbol, nbytes):
            self.queue.buffers[channel].append(row)
            self.messages += 1
            return True
        return False

    # -- events ----------------------------------------------------------------
    def event(self, exchange: str, symbol: str | None, channel: str | None, event: str,
              reason: str | None = None, count: int | None = None) -> None:
        """Queue an event row (never dropped) and log it with journald fields."""
        self.event_counts[event] += 1
        self.queue.buffers["events"].add(exchange, symbol, channel, event, reason, count, time.time_ns())
        level = log.info if event in ("resync", "recovered") else log.warning
        level(f"stream_{event}", exchange=exchange, symbol=symbol, channel=channel, reason=reason, count=count)

    def unrequested(self, exchange: str, channel: str, symbol: str) -> None:
        """A row for a (channel, symbol) this collector was not asked for: count it, not record it.

        An `unrequested` event (count = rows since the previous one) at the 1st, 10th, 100th, ...
        row of each (exchange, channel, symbol): visible at once, and bounded however long it lasts."""
        key = (exchange, channel, symbol)
        self.unrequested_rows += 1
        self._unrequested[key] += 1
        n, reported = self._unrequested[key], self._unrequested_reported.get(key, 0)
        if n >= max(1, reported * 10):
            self._unrequested_reported[key] = n
            self.event(exchange, symbol, channel, "unrequested",
                       f"{n} {channel} row(s) so far for {symbol!r}, which is not configured on this channel: "
                       f"not recorded; if the exchange reports one of your symbols under this name, add "
                       f"`aliases: {{{symbol!r}: <configured symbol>}}` to the exchange entry", n - reported)

    def snapshot_requested(self, exchange: str, symbol: str) -> None:
        """A REST book snapshot is being fetched: the next book row of `symbol` starts a new state."""
        self._snapshot_pending.add((exchange, symbol))

    def _check_crossed(self, exchange: str, symbol: str, book: Any) -> None:
        bids, asks = book["bids"], book["asks"]
        crossed = bool(bids) and bool(asks) and bids[0][0] >= asks[0][0]
        key = (exchange, symbol)
        if crossed and key not in self._crossed:
            self._crossed.add(key)
            self.event(exchange, symbol, "orderbook", "crossed_book",
                       f"best bid {bids[0][0]} >= best ask {asks[0][0]} at nonce {book.get('nonce')}")
        elif not crossed and key in self._crossed:
            self._crossed.discard(key)
            log.info("stream_uncrossed", exchange=exchange, symbol=symbol)

    # -- health ----------------------------------------------------------------
    def data_silence(self) -> float:
        """Seconds since any configured stream delivered data (since start if none has yet)."""
        return time.monotonic() - (self.last_data if self.last_data is not None else self.started)

    def symbols_up(self, exchange: str, symbols: list[str], within: float) -> int:
        """Symbols of `exchange` with any update in the last `within` seconds."""
        since = time.monotonic_ns() - int(within * 1e9)
        up = set()
        for (ex, _ch, sym), t in self.last_seen.items():
            if ex == exchange and t >= since:
                up.add(sym)
        return len(up & set(symbols))
