"""Check Coinbase Advanced Trade's per-connection `sequence_num`, which ccxt.pro `coinbase` never reads.

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

Only ccxt's public structures and its own `client.reject` path are used.
"""
from __future__ import annotations

from typing import Any

import ccxt

BOOK_HASH = "level2::"


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

        def resync_books(self, client: Any, why: str) -> None:
            for message_hash in [h for h in client.subscriptions if str(h).startswith(BOOK_HASH)]:
                symbol = message_hash[len(BOOK_HASH):]
                del client.subscriptions[message_hash]
                self.orderbooks.pop(symbol, None)
                client.reject(ccxt.InvalidNonce(f"{self.id} {symbol}: {why}, a message was lost"), message_hash)

    CoinbaseChecked.__name__ = f"CoinbaseChecked_{base.__name__}"
    return CoinbaseChecked
