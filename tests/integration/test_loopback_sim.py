"""The sim market's own invariants, without any network: what every client relies on."""
from __future__ import annotations

from fluxforge.loopback import SimOptions
from fluxforge.loopback.book import BookState
from fluxforge.loopback.events import BookUpdate, Trade
from fluxforge.loopback.simulator import SimMarket


def test_sim_books_stay_uncrossed_contiguous_and_on_the_tick_grid():
    symbols = ["BTC/USDT", "XRP/USDT", "FOO/USDT"]
    market = SimMarket(symbols, SimOptions(depth=50, trades_per_update=1.0, seed=42))
    mirror = {s: BookState(s) for s in symbols}  # rebuilt only from what was published
    for s in symbols:
        mirror[s].load(*market.books[s].snapshot())
    last_trade = {s: None for s in symbols}
    events = []

    def publish(event):
        events.append(event)
        if isinstance(event, BookUpdate):
            market.books[event.symbol].apply(event)  # what the hub does

    for i in range(3000):
        market.step(symbols[i % len(symbols)], publish)
    assert sum(isinstance(e, Trade) for e in events) > 1000
    for event in events:
        s = event.symbol
        if isinstance(event, BookUpdate):
            book = mirror[s]
            assert event.first_id == book.last_update_id + 1 and event.last_id >= event.first_id
            assert event.last_id - event.first_id + 1 == len(event.bids) + len(event.asks)
            book.apply(event)
            assert float(book.best_bid()[0]) < float(book.best_ask()[0])
            assert 40 <= len(book.bids) <= 52 and 40 <= len(book.asks) <= 52
        else:
            assert event.side in ("buy", "sell") and float(event.amount) > 0
            assert last_trade[s] is None or event.trade_id == last_trade[s] + 1
            last_trade[s] = event.trade_id
    tick = {"BTC/USDT": 0.01, "XRP/USDT": 0.0001, "FOO/USDT": 0.01}
    for s in symbols:
        assert mirror[s].snapshot() == market.books[s].snapshot()
        for price in list(mirror[s].bids) + list(mirror[s].asks):
            assert abs(price / tick[s] - round(price / tick[s])) < 1e-6
