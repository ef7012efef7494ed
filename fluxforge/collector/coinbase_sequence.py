"""Check Coinbase Advanced Trade's per-connection `sequence_num`, which ccxt.pro `coinbase` never reads,
and carry it as the book's order key.

Why: Coinbase numbers every message on a connection (all channels, from 0); its
`level2` book has no sequence of its own.  ccxt.pro `coinbase` (4.5.x) applies
`l2_data` updates without looking at `sequence_num`, so one lost message leaves
a wrong book that ccxt serves, and bronze would store, until the next snapshot,
which only comes with a new subscription.  So the collector checks it: on a jump
(or a step back that is not a new connection's 0) every book of that connection
is forgotten and its watch rejected with `InvalidNonce` *before* the message is
handled, which the tap records as a `gap`; the watcher's next call subscribes
again and Coinbase sends fresh snapshots (a `resync`).  Which channel lost the
message cannot be known, so every book on the connection resyncs; a lost trade
or ticker cannot be recovered and is only reported by that gap.

The same number is the only order key a Coinbase book message has (`level2` has no
sequence of its own, and ccxt sets no book nonce): it is set as the book's `nonce`
before ccxt resolves the book, so every bronze row of a Coinbase book carries the
`sequence_num` of its message (and ccxt's `timestamp`, the message's exchange time).
It is an order key, not a chain: it restarts at 0 on every connection (a reconnect is
an event, then a snapshot) and skips the numbers of other channels' messages, so it
never goes in `prev_nonce` and nothing checks it for continuity (docs/schemas.md).

Only ccxt's public structures and its own `client.reject` path are used.
"""
from __future__ import annotations

from typing import Any

import ccxt

from .client_proxy import ClientProxy

BOOK_HASH = "level2::"


class _SequencedClient(ClientProxy):
    """The client as `handle_order_book` sees it: a book is resolved carrying its message's `sequence_num`."""

    def __init__(self, client: Any, sequence: int):
        super().__init__(client)
        self._sequence = sequence

    def resolve(self, result: Any, message_hash: Any = None) -> Any:
        if isinstance(result, dict) and "bids" in result:
            result["nonce"] = self._sequence
        return self._client.resolve(result, message_hash)


def coinbase_checked_class(base: type) -> type:
    """A subclass of ccxt.pro coinbase that checks every message's `sequence_num`."""

    class CoinbaseChecked(base):  # type: ignore[misc, valid-type]
        def handle_message(self, client: Any, message: Any) -> None:
            seq = message.get("sequence_num") if isinstance(message, dict) else None
            if isinstance(seq, int):
                last = getattr(client, "_fluxforge_sequence", None)
                client._fluxforge_sequence = seq
                if last is not None and seq != last + 1 and seq != 0:
                    self.resync_books(client, f"sequence_num {seq} after {last}")
            return super().handle_message(client, message)

        def handle_order_book(self, client: Any, message: Any) -> None:
            seq = message.get("sequence_num") if isinstance(message, dict) else None
            if not isinstance(seq, int):
                return super().handle_order_book(client, message)
            return super().handle_order_book(_SequencedClient(client, seq), message)

        def resync_books(self, client: Any, why: str) -> None:
            for message_hash in [h for h in client.subscriptions if str(h).startswith(BOOK_HASH)]:
                symbol = message_hash[len(BOOK_HASH):]
                del client.subscriptions[message_hash]
                self.orderbooks.pop(symbol, None)
                client.reject(ccxt.InvalidNonce(f"{self.id} {symbol}: {why}, a message was lost"), message_hash)

    CoinbaseChecked.__name__ = f"CoinbaseChecked_{base.__name__}"
    return CoinbaseChecked
