"""Verify Kraken v2 book checksums that ccxt.pro `kraken` does not (or cannot) check.

Why: Kraken's `book` channel has no sequence numbers; its CRC32 `checksum`
of the top 10 levels is the only way to notice a lost or misapplied update.
ccxt.pro `kraken` (4.5.x) ships that check switched off (option
`watchOrderBook.checksum`, "temporarily disabled"), and switched on it cannot
work in Python: it formats the book's float prices with `format_number`, which
calls `str.split` on them (AttributeError), and without the pair's precision.
Unchecked, one lost message leaves a wrong book in bronze until the next
reconnect.  So the collector checks it: after ccxt has applied a book message
and *before* ccxt resolves it (so a wrong book is never recorded), the book's
top 10 levels are formatted with the market's price and amount precision, and
their CRC32 compared with the message's.  On a mismatch it does what ccxt's own
check would: forget the subscription and the book and reject the watch with
`ChecksumError`; the tap records that as a `gap`, and the watcher's next call
subscribes again, which brings a fresh snapshot (a `resync`).

Only ccxt's public structures and its own `client.reject` path are used.
"""
from __future__ import annotations

import zlib
from typing import Any

import ccxt

from .client_proxy import ClientProxy

LEVELS = 10


def places(step: Any) -> int:
    """Decimal places of a precision step such as 0.01 or 1e-08."""
    text = f"{float(step):.12f}".rstrip("0")
    return len(text.partition(".")[2])


def field(value: float, digits: int) -> str:
    return f"{value:.{digits}f}".replace(".", "").lstrip("0")


def book_checksum(book: Any, price_places: int, amount_places: int) -> int:
    """Kraken v2's CRC32 of the top 10 asks (ascending) then the top 10 bids (descending) of a ccxt book."""
    parts = [field(p, price_places) + field(q, amount_places)
             for side in (book["asks"], book["bids"]) for p, q, *_ in side[:LEVELS]]
    return zlib.crc32("".join(parts).encode())


class _CheckingClient(ClientProxy):
    """The ccxt client as `handle_order_book` sees it, with `resolve` checking the book first."""

    def __init__(self, client: Any, exchange: Any, expected: int):
        super().__init__(client)
        self._exchange, self._expected = exchange, expected

    def resolve(self, result: Any, message_hash: Any = None) -> Any:
        ex, symbol = self._exchange, result.get("symbol")
        market = ex.market(symbol)
        actual = book_checksum(result, places(market["precision"]["price"]), places(market["precision"]["amount"]))
        if actual == self._expected:
            return self._client.resolve(result, message_hash)
        self._client.subscriptions.pop(message_hash, None)
        ex.orderbooks.pop(symbol, None)
        error = ccxt.ChecksumError(f"{ex.id} {ex.orderbook_checksum_message(symbol)} "
                                   f"(expected {self._expected}, book gives {actual})")
        return self._client.reject(error, message_hash)


def kraken_checked_class(base: type) -> type:
    """A subclass of ccxt.pro kraken (or anything derived from it) that verifies every book checksum."""

    class KrakenChecked(base):  # type: ignore[misc, valid-type]
        def handle_order_book(self, client: Any, message: dict) -> None:
            data = message.get("data") if isinstance(message, dict) else None
            first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
            expected = first.get("checksum")
            if message.get("type") == "update" and first.get("symbol") not in self.orderbooks:
                return None  # the book was dropped on a mismatch: updates wait for the new snapshot
            if not isinstance(expected, int):
                return super().handle_order_book(client, message)
            return super().handle_order_book(_CheckingClient(client, self, expected), message)

    KrakenChecked.__name__ = f"KrakenChecked_{base.__name__}"
    return KrakenChecked
