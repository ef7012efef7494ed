"""The loopback's derived streams: Binance klines from trades, bookTicker from the book."""
from __future__ import annotations

from fluxforge.loopback.book import BookState
from fluxforge.loopback.events import BookUpdate, Trade
from fluxforge.loopback.quotes import Candles, TopOfBook


def trade(i: int, ts: int, px: str, qty: str) -> Trade:
    return Trade("BTC/USDT", i, ts, px, qty, "buy")


def summary(klines):
    return [(k.timeframe, k.open_ms, k.open, k.high, k.low, k.close, k.volume, k.trades, k.closed) for k in klines]


def test_candles_close_roll_and_carry_the_close():
    c = Candles({"1s": 1000, "1m": 60_000})
    for t in (trade(1, 1000, "10", "1"), trade(2, 1500, "12", "2"), trade(3, 1700, "9", "0.5"),
              trade(4, 2100, "11", "1")):
        c.on_trade(t)
    assert summary(c.updates("BTC/USDT", 2200)) == [
        ("1s", 1000, "10", "12", "9", "9", "3.50000000", 3, True),   # ended: its final state, once
        ("1s", 2000, "11", "11", "11", "11", "1.00000000", 1, False),
        ("1m", 0, "10", "12", "9", "11", "4.50000000", 4, False),
    ]
    # no trade in 3000..3999: the 2000 candle ends, the next one opens at its close with no volume
    assert summary(c.updates("BTC/USDT", 3500)) == [
        ("1s", 2000, "11", "11", "11", "11", "1.00000000", 1, True),
        ("1s", 3000, "11", "11", "11", "11", "0.00000000", 0, False),
        ("1m", 0, "10", "12", "9", "11", "4.50000000", 4, False),
    ]
    assert [k.close_ms for k in c.updates("BTC/USDT", 3600)] == [3999, 59_999]
    assert c.updates("ETH/USDT", 3600) == []


def test_book_ticker_only_when_the_top_changes():
    book, top = BookState("BTC/USDT"), TopOfBook()
    book.load(10, [("100", "1"), ("99", "1")], [("101", "2")])
    first = top.after_update(book)
    assert (first.update_id, first.bid, first.bid_qty, first.ask, first.ask_qty) == (10, "100", "1", "101", "2")
    book.apply(BookUpdate("BTC/USDT", 11, 11, 0, bids=[("99", "5")]))  # below the top
    assert top.after_update(book) is None
    book.apply(BookUpdate("BTC/USDT", 12, 12, 0, bids=[("100", "0")]))  # best bid removed
    assert (top.after_update(book).update_id, top.after_update(book)) == (12, None)
    book.apply(BookUpdate("BTC/USDT", 13, 13, 0, asks=[("101", "0")]))  # no ask left: nothing to quote
    assert top.after_update(book) is None
