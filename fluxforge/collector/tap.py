"""A tap on an unmodified ccxt.pro exchange: see every update as it is received.

Why: `watch_order_book()` returns the *current* book when the awaiting
coroutine next runs, and ccxt drains several buffered websocket frames in one go,
so a watcher loop silently coalesces updates (intermediate nonces never seen).
Bronze must keep every update.  ccxt.pro exchanges all funnel a parsed update
into `client.resolve(result, message_hash)`, synchronously, inside
`client.handle_message(frame)`; the tap wraps those two methods on each
websocket client the exchange creates (via a subclass overriding `client()`),
so each update is recorded once per frame with `time.time_ns()` at receipt.

It also
* turns `client.reject(InvalidNonce/ChecksumError, hash)` into a `gap` event
  for the symbol named by the hash, at the moment it happens;
* keeps a frame that ccxt cannot handle (malformed JSON, ...) from killing
  ccxt's receive loop: it is recorded as an `error` event and skipped;
* under the `block` overflow policy, makes the socket reader wait while the
  queue is full (TCP back-pressure);
* records each row under the configured symbol (an `aliases` entry maps the name an exchange
  reports to it) and only for the channels that symbol is configured on; a row for anything
  else is counted and reported (`Recorder.unrequested`), never dropped silently;
* records order books losslessly: the levels ccxt stores for each book message
  and every snapshot that (re)initialises a book (see `book_tap.py`); an
  exchange whose books do not go through those hooks falls back to a top
  `book_depth` snapshot row per update;
* routes REST book snapshots (`fetch_order_book`, which ccxt uses to sync
  diff-based books) through the `SnapshotGate`, so restarts and resyncs are
  staggered, and marks the symbol's next book row as a `resync`.

Only the public structures ccxt itself returns are read (OrderBook, trade
caches, ticker dicts, `exchange.bidsasks`, the OHLCV caches of `candle_tap.py`),
so nothing here is specific to one exchange.
"""
from __future__ import annotations

import time
from typing import Any

import ccxt
from ccxt.async_support.base.ws.cache import BaseCache
from ccxt.async_support.base.ws.order_book import OrderBook

from ..logs import get_logger
from .book_tap import RecordingOrderBook, message_links
from .candle_tap import adopt_foreign_cache, candle_cache_of, install_candle_caches
from .recorder import Recorder
from .snapshot_gate import SnapshotGate

log = get_logger("fluxforge.collector.tap")
_MAX_REASON = 200


class ExchangeTap:
    """Per-exchange state of the tap: which (channel, symbol) we record, aliases and per-frame dedup."""

    def __init__(self, exchange_id: str, channel_symbols: dict[str, list[str]], aliases: dict[str, str],
                 recorder: Recorder, gate: SnapshotGate, partial_books: bool = False):
        self.exchange_id = exchange_id
        self.partial_books = partial_books  # `book_stream: partial`: every book reset is a top-N message
        self.wanted = {ch: set(symbols) for ch, symbols in channel_symbols.items()}
        self.symbols: set[str] = set().union(*self.wanted.values())
        self.channels = set(self.wanted)
        self.aliases = dict(aliases)
        self.recorder = recorder
        self.gate = gate
        self.frame = 0                      # frame counter, for once-per-frame dedup
        self.recv_ns: int | None = None     # receipt time of the frame being handled
        self._seen: set[tuple[str, str]] = set()  # (channel, symbol) recorded in this frame
        self._last_trade: dict[int, Any] = {}     # id(trade cache) -> last trade object recorded
        self.tap_errors = 0
        self.exchange: Any = None           # the tapped exchange (set by `tapped_exchange_class`'s client())

    # -- hooks installed on each ccxt websocket client ---------------------------
    def install(self, client: Any) -> None:
        if getattr(client, "_fluxforge_tapped", False):
            return
        client._fluxforge_tapped = True
        handle_message, resolve, reject, receive = client.handle_message, client.resolve, client.reject, client.receive
        recorder, queue = self.recorder, self.recorder.queue

        def tapped_handle_message(message: Any) -> None:
            self.frame += 1
            self._seen.clear()
            self.recv_ns = time.time_ns()
            try:
                handle_message(message)
            except Exception as e:  # a frame ccxt cannot parse must not kill its receive loop
                data = getattr(message, "data", message)
                recorder.event(self.exchange_id, None, None, "error",
                               f"unhandled frame: {type(e).__name__}: {e}; frame={str(data)[:_MAX_REASON]!r}")
            finally:
                self.recv_ns = None

        def tapped_resolve(result: Any, message_hash: Any = None) -> Any:
            try:
                self.observe(result)
            except Exception as e:  # never break ccxt because of a recording bug
                self.tap_errors += 1
                log.exception("tap_error", exchange=self.exchange_id, error=str(e))
            return resolve(result, message_hash)

        def tapped_reject(result: Any, message_hash: Any = None) -> Any:
            if isinstance(result, ccxt.InvalidNonce) and message_hash is not None:
                symbol = self._symbol_in_hash(str(message_hash))
                recorder.event(self.exchange_id, symbol, "orderbook", "gap",
                               f"{type(result).__name__}: {result}"[:_MAX_REASON])
            return reject(result, message_hash)

        async def receive_when_space() -> Any:
            await queue.wait_for_space()
            return await receive()

        def tapped_receive() -> Any:
            # a plain function returning ccxt's own coroutine: no extra frame per message
            return receive_when_space() if queue.full else receive()

        client.handle_message = tapped_handle_message
        client.resolve = tapped_resolve
        client.reject = tapped_reject
        client.receive = tapped_receive

    def _symbol_in_hash(self, message_hash: str) -> str | None:
        names = {**{s: s for s in self.symbols}, **{a: s for a, s in self.aliases.items() if s in self.symbols}}
        for name in sorted(names, key=len, reverse=True):  # BTC/USDC before BTC/USD
            if message_hash.endswith(name) or f":{name}" in message_hash:
                return names[name]
        return None

    def ours(self, channel: str, symbol: Any) -> str | None:
        """The configured symbol a row of `channel` reported as `symbol` is recorded under, or None
        (then the row is counted as unrequested: this collector was not asked for it).  A book
        without a symbol yet is ccxt setting up a new book (reset before labelling it): no row."""
        mapped = self.aliases.get(symbol, symbol)
        if mapped in self.wanted.get(channel, ()):
            return mapped
        if symbol is None:
            return None
        self.recorder.unrequested(self.exchange_id, channel, str(symbol))
        return None

    def _first_in_frame(self, channel: str, symbol: str) -> bool:
        key = (channel, symbol)
        if self.recv_ns is not None:
            if key in self._seen:
                return False
            self._seen.add(key)
        return True

    # -- order book hooks (book_tap.py) -------------------------------------------
    def book_reset(self, book: RecordingOrderBook, snapshot: Any) -> None:
        """ccxt reset `book` to a snapshot (e.g. REST depth): record it whole."""
        symbol = self.ours("orderbook", book.get("symbol"))
        if symbol is None:
            return
        book.rows += 1
        try:
            if self.partial_books:  # a depth-limited stream: every message resets the book (partial_books.py)
                self.recorder.book_partial(self.exchange_id, symbol, book, self.recv_ns or time.time_ns())
            else:
                self.recorder.book_snapshot(self.exchange_id, symbol, book, self.recv_ns or time.time_ns(), None, None)
        except Exception as e:  # never break ccxt's resync because of a recording bug
            self.tap_errors += 1
            log.exception("tap_error", exchange=self.exchange_id, error=str(e))

    def book_message(self, orderbooks: Any, book: Any, message: Any) -> None:
        """ccxt applied one exchange message to `book`: record its levels (or the book, if it was new)."""
        if not isinstance(book, RecordingOrderBook):
            return
        bid_log, ask_log = book.take_logs()
        if orderbooks.get(book.get("symbol")) is not book:
            return  # ccxt rejected the message (nonce gap) and dropped the book
        symbol = self.ours("orderbook", book.get("symbol"))
        if symbol is None:
            return
        prev_nonce, checksum = message_links(message)
        recv_ns = self.recv_ns or time.time_ns()
        book.rows += 1
        if book.fresh:  # the first message into an empty book initialises it (OKX's WS snapshot)
            book.fresh = False
            self.recorder.book_snapshot(self.exchange_id, symbol, book, recv_ns, prev_nonce, checksum)
        else:
            self.recorder.book_delta(self.exchange_id, symbol, book, recv_ns, prev_nonce, checksum,
                                     bid_log, ask_log)

    # -- candles (candle_tap.py) ---------------------------------------------------
    def reported_names(self, symbol: str) -> list[str]:
        """`symbol` and every name the exchange reports it under (`aliases`)."""
        return [symbol] + [reported for reported, ours in self.aliases.items() if ours == symbol]

    def candle(self, symbol: str, timeframe: str, candle: list) -> None:
        """ccxt parsed one candle update reported as `symbol` (called from inside its handler)."""
        ours = self.ours("ohlcv", symbol)
        if ours is None:
            return
        try:
            self.recorder.candle(self.exchange_id, ours, timeframe, candle, self.recv_ns or time.time_ns())
        except Exception as e:  # never break ccxt because of a recording bug
            self.tap_errors += 1
            log.exception("tap_error", exchange=self.exchange_id, error=str(e))

    # -- classification of what ccxt resolved ------------------------------------
    def observe(self, result: Any) -> None:
        recv_ns = self.recv_ns or time.time_ns()
        candles = candle_cache_of(result)
        if candles is not None:  # candles: recorded one by one as ccxt appends them (candle_tap.py)
            if self.exchange is not None:
                adopt_foreign_cache(self.exchange, *candles, self.candle)
            return
        if isinstance(result, OrderBook):
            if isinstance(result, RecordingOrderBook):
                if result.rows:
                    return  # recorded message by message by the hooks
                result.take_logs()  # hooks not in use for this exchange: keep the logs from growing
            if self._first_in_frame("orderbook", result.get("symbol")):
                symbol = self.ours("orderbook", result.get("symbol"))
                if symbol is not None:
                    self.recorder.book(self.exchange_id, symbol, result, recv_ns)
        elif isinstance(result, BaseCache):
            self._observe_trades(result, recv_ns)
        elif isinstance(result, dict):
            if "symbol" in result:
                if "bid" in result or "last" in result:
                    self._observe_quote(result, recv_ns, batch=False)
            elif result:  # a batch `{symbol: ticker}` (watch_tickers, OKX's tickers channel)
                for value in result.values():
                    if not (isinstance(value, dict) and "symbol" in value):
                        break
                    self._observe_quote(value, recv_ns, batch=True)

    def _observe_quote(self, ticker: dict, recv_ns: int, batch: bool) -> None:
        """A ticker or a best bid/ask: ccxt keeps what `watch_bids_asks` resolves in `exchange.bidsasks`
        and tickers in `exchange.tickers` (OKX fills both from one tickers frame, as two objects)."""
        reported = ticker["symbol"]
        ex = self.exchange
        bid_ask = ex is not None and (ex.bidsasks or {}).get(reported) is ticker
        is_ticker = ex is not None and (ex.tickers or {}).get(reported) is ticker
        if bid_ask and self._first_in_frame("bidsasks", reported):
            symbol = self.ours("bidsasks", reported)
            if symbol is not None:
                self.recorder.bid_ask(self.exchange_id, symbol, ticker, recv_ns)
        if (is_ticker or not (bid_ask or batch)) and self._first_in_frame("ticker", reported):
            symbol = self.ours("ticker", reported)
            if symbol is not None:
                self.recorder.ticker(self.exchange_id, symbol, ticker, recv_ns)

    def _observe_trades(self, cache: Any, recv_ns: int) -> None:
        """Record the trades appended to `cache` since we last saw it (identity walk from the end)."""
        if not len(cache):
            return
        last = self._last_trade.get(id(cache))
        new = []
        for item in reversed(cache):
            if item is last:
                break
            new.append(item)
        if not new or not isinstance(new[0], dict) or "price" not in new[0] or "amount" not in new[0]:
            return
        self._last_trade[id(cache)] = cache[-1]
        for trade in reversed(new):
            symbol = self.ours("trades", trade.get("symbol"))
            if symbol is not None:
                self.recorder.trade(self.exchange_id, symbol, trade, recv_ns)


def tapped_exchange_class(base: type, tap: ExchangeTap) -> type:
    """A subclass of the ccxt.pro exchange class `base` whose websocket clients carry `tap`."""

    class Tapped(base):  # type: ignore[misc, valid-type]
        def client(self, url: str) -> Any:
            tap.exchange = self
            c = super().client(url)
            tap.install(c)
            return c

        async def watch_ohlcv(self, symbol: str, timeframe: str = "1m", *args: Any, **kw: Any) -> Any:
            install_candle_caches(self, [(name, timeframe) for name in tap.reported_names(symbol)], tap.candle)
            return await super().watch_ohlcv(symbol, timeframe, *args, **kw)

        async def watch_ohlcv_for_symbols(self, symbols_and_timeframes: list, *args: Any, **kw: Any) -> Any:
            install_candle_caches(self, [(name, tf) for s, tf in symbols_and_timeframes
                                         for name in tap.reported_names(s)], tap.candle)
            return await super().watch_ohlcv_for_symbols(symbols_and_timeframes, *args, **kw)

        def order_book(self, snapshot: Any = {}, depth: Any = None) -> Any:  # noqa: B006 (ccxt's signature)
            return RecordingOrderBook(snapshot, depth, on_reset=tap.book_reset)

        def handle_order_book_message(self, client: Any, message: Any, orderbook: Any, *args: Any, **kw: Any) -> Any:
            result = super().handle_order_book_message(client, message, orderbook, *args, **kw)
            try:
                tap.book_message(self.orderbooks, orderbook, message)
            except Exception as e:  # never break ccxt because of a recording bug
                tap.tap_errors += 1
                log.exception("tap_error", exchange=tap.exchange_id, error=str(e))
            return result

        async def fetch_order_book(self, symbol: str, limit: Any = None, params: Any = None) -> Any:
            async with tap.gate.slot():
                tap.recorder.snapshot_requested(tap.exchange_id, symbol)
                return await super().fetch_order_book(symbol, limit, params or {})

    Tapped.__name__ = f"Tapped_{base.__name__}"
    return Tapped
