"""A book subscribe Coinbase refuses is retried with back-off, not left waiting for the next reconnect.

Why: Coinbase answers a subscribe it will not serve (a product halted, delisted or not
offered on `level2`) with an error message (`{"type": "error", "message": ...}`).  ccxt.pro
`coinbase` (4.5.x) raises that out of its message handler and forgets it: the watch that
asked stays pending and its subscription stays marked as sent, so no later `watch_*` call
asks again until the connection is replaced.  Under `isolate_books` that is one symbol's
book lost for as long as the connection lives, with every other stream fine.

So the collector attributes the error to the book subscriptions it answers -- those whose
product id the message names, else (a message naming no product) those still waiting for
their first book -- forgets them and rejects their watches with the exchange's words.  The
symbol's watcher records that as an `error` event and calls again after its back-off
(`watchers.StreamWatcher`), which sends the subscribe again; the other symbols' watches and
the connection are not touched.  An error no book subscription is waiting on is left to ccxt
(the tap records it as an `error` event, as before).

Only ccxt's public structures and its own `client.reject` path are used.
"""
from __future__ import annotations

import re
from typing import Any

import ccxt

from .coinbase_sequence import BOOK_HASH

PRODUCT_ID = re.compile(r"[A-Za-z0-9]+-[A-Za-z0-9]+")  # Coinbase product ids: BTC-USD, ETH-USDC, ...


def error_words(message: Any) -> str:
    """What a Coinbase error message says: its `message` and `reason`."""
    return f"{message.get('message') or ''} {message.get('reason') or ''}".strip()


def refused_books(message: Any, book_symbols: dict[str, str], have_book: set[str]) -> list[str]:
    """The book subscriptions (unified symbols; `book_symbols` maps each to its product id) an error
    `message` refuses: those it names, else, if it names no product, those without a book yet."""
    named = set(PRODUCT_ID.findall(error_words(message)))
    if named:
        return [s for s, pid in book_symbols.items() if pid in named]
    return [s for s in book_symbols if s not in have_book]


def coinbase_refusals_class(base: type) -> type:
    """A subclass of ccxt.pro coinbase whose refused book subscriptions fail their watches (to be retried)."""

    class CoinbaseRefusals(base):  # type: ignore[misc, valid-type]
        def handle_message(self, client: Any, message: Any) -> None:
            if isinstance(message, dict) and message.get("type") == "error" and self.refuse_books(client, message):
                return None
            return super().handle_message(client, message)

        def refuse_books(self, client: Any, message: dict) -> bool:
            """Reject the watches of the book subscriptions `message` refuses; False when there are none."""
            markets = self.markets or {}
            book_symbols = {h[len(BOOK_HASH):]: None for h in client.subscriptions if str(h).startswith(BOOK_HASH)}
            book_symbols = {s: (markets.get(s) or {}).get("id") for s in book_symbols}
            refused = refused_books(message, book_symbols, set(self.orderbooks or {}))
            words = error_words(message)
            for symbol in refused:
                message_hash = BOOK_HASH + symbol
                del client.subscriptions[message_hash]
                client.reject(ccxt.ExchangeError(f"{self.id} {symbol}: subscribe refused: {words}"), message_hash)
            return bool(refused)

    CoinbaseRefusals.__name__ = f"CoinbaseRefusals_{base.__name__}"
    return CoinbaseRefusals
