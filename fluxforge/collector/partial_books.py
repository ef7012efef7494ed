"""Depth-limited book streams (`book_stream: partial`): the exchange's own top-N snapshots.

Why: following the full diff stream means holding and updating the whole book, which a
constrained Pi may not afford for many symbols.  Exchanges offer depth-limited streams
where every message is the whole top-N book; each such message becomes a bronze
`snapshot` row (no delta chain to check, each row replaces the book).

How each exchange is reached through unmodified ccxt.pro 4.5:

* OKX: ccxt subscribes `books5` itself (`watch_order_book(symbol, params={'depth':
  'books5'})`) and `reset`s its book to every message, which the tap sees.
* Binance (and Binance US): ccxt.pro cannot.  `watch_order_book` always subscribes the
  diff stream `<sym>@depth@<watchOrderBookRate>ms` (its source carries "todo add support
  for <levels>-snapshots"), and its `handle_message` dispatches on the event field `e`,
  which a partial payload (`{"lastUpdateId", "bids", "asks"}`) lacks, so such a frame is
  ignored.  The subclass below subscribes the documented raw-stream URL
  `<ws>/<sym>@depth<N>@100ms` through ccxt's own `watch()` (one connection per symbol: a
  raw payload does not name its symbol, the URL does), parses the payload with ccxt's
  `parse_order_book` and `reset`s ccxt's book to it, as ccxt does for OKX `books5`.
  Spot markets only (futures partial payloads have a different shape).
"""
from __future__ import annotations

from typing import Any

import ccxt


class BinancePartialBooks:
    """Mixed into ccxt.pro `binance` / `binanceus`: `watch_partial_book` on `<sym>@depth<N>@100ms`."""

    _partial_streams: dict[str, str]  # client url -> symbol

    async def watch_partial_book(self, symbol: str, depth: int) -> Any:
        if self.markets is None:  # type: ignore[attr-defined]
            await self.load_markets()  # type: ignore[attr-defined]
        market = self.market(symbol)  # type: ignore[attr-defined]
        if not market.get("spot"):
            raise ccxt.NotSupported(f"{symbol}: partial depth streams are recorded for spot markets only")
        stream = f"{market['lowercaseId']}@depth{depth}@100ms"
        url = f"{self.urls['api']['ws']['spot']}/{stream}"  # type: ignore[attr-defined]
        if not hasattr(self, "_partial_streams"):
            self._partial_streams = {}
        self._partial_streams[url] = market["symbol"]
        # the stream is named by the URL: nothing to send (message None), one subscription per URL
        book = await self.watch(url, "orderbook::" + market["symbol"], None, stream)  # type: ignore[attr-defined]
        return book.limit()

    def handle_message(self, client: Any, message: Any) -> Any:
        symbol = getattr(self, "_partial_streams", {}).get(client.url)
        if symbol is not None and isinstance(message, dict) and "lastUpdateId" in message:
            return self._handle_partial_book(client, symbol, message)
        return super().handle_message(client, message)  # type: ignore[misc]

    def _handle_partial_book(self, client: Any, symbol: str, message: dict) -> None:
        books = self.orderbooks  # type: ignore[attr-defined]
        book = books.get(symbol)
        if book is None:
            book = books[symbol] = self.order_book({})  # type: ignore[attr-defined]
        snapshot = self.parse_order_book(message, symbol)  # type: ignore[attr-defined]
        snapshot["nonce"] = self.safe_integer(message, "lastUpdateId")  # type: ignore[attr-defined]
        book.reset(snapshot)
        client.resolve(book, "orderbook::" + symbol)


class OkxPartialBooks:
    """Mixed into ccxt.pro `okx`: `watch_partial_book` is ccxt's own `books5` subscription.

    ccxt parses a `books5` push without its `seqId`; it is kept as the book's nonce (bronze's
    order key), as ccxt does for the `books` channel."""

    def watch_partial_book(self, symbol: str, depth: int) -> Any:
        return self.watch_order_book(symbol, None, {"depth": f"books{depth}"})  # type: ignore[attr-defined]

    def parse_order_book(self, orderbook: Any, symbol: str, timestamp: Any = None, *args: Any, **kw: Any) -> Any:
        result = super().parse_order_book(orderbook, symbol, timestamp, *args, **kw)  # type: ignore[misc]
        if result.get("nonce") is None and isinstance(orderbook, dict) and "seqId" in orderbook:
            result["nonce"] = self.safe_integer(orderbook, "seqId")  # type: ignore[attr-defined]
        return result


PARTIAL = {"binance": BinancePartialBooks, "binanceus": BinancePartialBooks, "okx": OkxPartialBooks}


def with_partial_books(exchange_id: str, book_stream: str, base: type) -> type:
    """`base`, or with `book_stream: partial` a subclass with `watch_partial_book(symbol, depth)`."""
    if book_stream != "partial":
        return base
    mixin = PARTIAL[exchange_id]  # the config allows partial only for these
    return type(f"Partial_{base.__name__}", (mixin, base), {})
