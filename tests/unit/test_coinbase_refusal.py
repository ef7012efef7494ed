"""Which book subscriptions a Coinbase error message refuses (collector/coinbase_refusal.py)."""
from __future__ import annotations

from fluxforge.collector.coinbase_refusal import refused_books

BOOKS = {"BTC/USD": "BTC-USD", "BTC/USDC": "BTC-USDC", "ETH/USDT": "ETH-USDT"}


def test_the_products_a_message_names_are_refused_and_no_other():
    message = {"type": "error", "message": "Failure to subscribe: level2 unavailable for ['BTC-USDC']"}
    assert refused_books(message, BOOKS, have_book=set()) == ["BTC/USDC"]  # not BTC-USD, its prefix
    named_elsewhere = {"type": "error", "message": "Failed to subscribe", "reason": "SOL-USD is not a valid product"}
    assert refused_books(named_elsewhere, BOOKS, have_book=set()) == []  # not a book we asked for: left to ccxt


def test_a_message_naming_no_product_refuses_the_books_still_waiting_for_their_first():
    message = {"type": "error", "message": "Failed to subscribe"}
    assert refused_books(message, BOOKS, have_book={"BTC/USD"}) == ["BTC/USDC", "ETH/USDT"]
    assert refused_books(message, BOOKS, have_book=set(BOOKS)) == []
