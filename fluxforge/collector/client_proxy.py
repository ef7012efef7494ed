"""A ccxt websocket client seen through a wrapper that changes what one handler call does.

Why: several per-exchange additions (Kraken's checksum, Coinbase's sequence number as the
book's order key) must act at the moment ccxt's own message handler calls
`client.resolve(book, hash)` -- after ccxt has applied the message, before the tap records
it -- without modifying ccxt.  The exchange subclass passes its handler this proxy instead
of the client: everything is forwarded, and a subclass overrides `resolve`.
"""
from __future__ import annotations

from typing import Any


class ClientProxy:
    """Forwards every attribute to the wrapped ccxt client; subclasses override `resolve`."""

    def __init__(self, client: Any):
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def resolve(self, result: Any, message_hash: Any = None) -> Any:
        return self._client.resolve(result, message_hash)
