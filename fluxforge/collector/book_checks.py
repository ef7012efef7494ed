"""Per-exchange checks that unmodified ccxt.pro leaves out, chosen by exchange id.

Why a registry: the tap and the watchers are exchange-neutral; where one ccxt
exchange class skips a consistency check its exchange offers (Kraken's book
checksum, Coinbase's message sequence) or drops an answer it should act on
(Coinbase's refused subscribe), a subclass adds it, and this is the one place
that says which.
"""
from __future__ import annotations

from .coinbase_refusal import coinbase_refusals_class
from .coinbase_sequence import coinbase_checked_class
from .kraken_checksum import kraken_checked_class

CHECKED = {"kraken": (kraken_checked_class,), "coinbase": (coinbase_checked_class, coinbase_refusals_class)}


def with_book_checks(exchange_id: str, base: type) -> type:
    """`base`, or a subclass of it that checks what ccxt leaves unchecked for this exchange."""
    for checked in CHECKED.get(exchange_id, ()):
        base = checked(base)
    return base
