"""Lossless order book recording: what ccxt applies to a book, message by message.

Why here and not from the book ccxt returns: ccxt trims its own book on every
`watch_order_book` return (`watchOrderBookLimit`, e.g. 1000 levels for
Binance), so a level a diff added beyond that depth is forgotten and a copy of
"the book as ccxt holds it" has holes after large moves.  Bronze instead keeps
what the exchange said (DESIGN decision 3), normalised by ccxt:

* every price level ccxt stores (`Bids/Asks.storeArray`, which ccxt's
  `handle_delta` reaches through `store`) is appended to a flat per-side log
  (`px, sz, px, sz, ...`, size 0 = delete), so a *delta* row is the levels of
  one exchange message in message order, taken at the message handler's exit
  (`handle_order_book_message`, the per-message step of ccxt's binance and okx
  books) together with the exchange's sequence, link and checksum;
* `OrderBook.reset(snapshot)` (a REST depth snapshot) and the first message into
  a freshly created, empty book (OKX's WebSocket snapshot) become *snapshot*
  rows holding the whole book at the depth the exchange gave.

ccxt itself is not modified: `RecordingOrderBook` is what the tapped exchange's
`order_book()` factory returns (see `tap.tapped_exchange_class`).
"""
from __future__ import annotations

from typing import Any

from ccxt.async_support.base.ws.order_book import OrderBook
from ccxt.async_support.base.ws.order_book_side import Asks, Bids

class _LoggingSide:
    """Mixed into ccxt's Bids / Asks: every stored level is also logged flat into `log`.

    `_base_store` is the ccxt side's own `storeArray`; `store` (ccxt's `handle_delta`
    path) calls it directly, so logging adds no call per level."""

    _base_store: Any

    def __init__(self, deltas: Any = (), depth: Any = None):
        self.log: list = []
        super().__init__(deltas, depth)  # type: ignore[call-arg]

    def storeArray(self, delta):  # noqa: N802 (ccxt's name)
        log = self.log
        log.append(delta[0])
        log.append(delta[1])
        self._base_store(delta)

    def store(self, price, size):
        log = self.log
        log.append(price)
        log.append(size)
        self._base_store([price, size])


class RecordingBids(_LoggingSide, Bids):
    _base_store = Bids.storeArray


class RecordingAsks(_LoggingSide, Asks):
    _base_store = Asks.storeArray


class RecordingOrderBook(OrderBook):
    """A ccxt OrderBook whose sides log what is stored and whose resets are reported.

    `fresh` is true until the book was first initialised (by `reset` or by its
    first message); `rows` counts the rows recorded from it, so the tap knows
    the hooks are in use for this book.
    """

    def __init__(self, snapshot: Any = {}, depth: Any = None, on_reset: Any = None):  # noqa: B006 (ccxt's signature)
        snapshot = dict(snapshot)
        bids = RecordingBids(snapshot.get("bids", []), depth)
        asks = RecordingAsks(snapshot.get("asks", []), depth)
        snapshot["bids"], snapshot["asks"] = bids, asks
        super().__init__(snapshot, depth)
        self.on_reset = on_reset
        self.fresh = not (bids or asks)
        self.rows = 0
        self.take_logs()

    def take_logs(self) -> tuple[list, list]:
        """The (bid, ask) logs since the last call, handed over (not copied)."""
        bids, asks = self["bids"], self["asks"]
        out = bids.log, asks.log
        bids.log, asks.log = [], []
        return out

    def reset(self, snapshot: Any = {}) -> None:  # noqa: B006 (ccxt's signature)
        super().reset(snapshot)
        self.take_logs()
        self.fresh = False
        if self.on_reset is not None:
            self.on_reset(self, snapshot)


def message_links(message: Any) -> tuple[int | None, int | None]:
    """(prev_nonce, checksum) of a raw book message, by the field names exchanges use.

    OKX: `prevSeqId` (-1 on a snapshot: no link) and `checksum` (signed CRC32).
    Binance futures: `pu`.  Binance spot: `U` - 1 (the last id the previous
    message must have covered).  Anything else: no link, no checksum.
    """
    if not isinstance(message, dict):
        return None, None
    checksum = message.get("checksum")
    if checksum is not None:
        checksum = int(checksum)
    prev = message.get("prevSeqId")
    if prev is not None:
        prev = int(prev)
        return (None if prev < 0 else prev), checksum
    prev = message.get("pu")
    if prev is not None:
        return int(prev), checksum
    first = message.get("U")
    if first is not None:
        return int(first) - 1, checksum
    return None, checksum
