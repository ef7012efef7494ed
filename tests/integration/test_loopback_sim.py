"""The sim market's own invariants, without any network: what every client relies on."""
from __future__ import annotations

from fluxforge.loopback import SimOptions
from fluxforge.loopback.events import BookTicker, BookUpdate, Trade
from fluxforge.loopback.simulator import SimMarket


class PlainBook:
    """An independent mirror (not the loopback's BookState): price -> size per side, as a client keeps it."""

    def __init__(self, snapshot):
        last_id, bids, asks = snapshot
        self.last_update_id = last_id
        self.bids = {float(p): float(q) for p, q in bids}
        self.asks = {float(p): float(q) for p, q in asks}

    def apply(self, event: BookUpdate) -> None:
        for side, levels in ((self.bids, event.bids), (self.asks, event.asks)):
            for p, q in levels:
                if float(q) == 0.0:
                    del side[float(p)]  # a removal of a level that is not there is a sim bug
                else:
                    side[float(p)] = float(q)
        self.last_update_id = event.last_id

    def levels(self):
        return (self.last_update_id, sorted(self.bids.items(), reverse=True), sorted(self.asks.items()))


def test_sim_books_stay_uncrossed_contiguous_and_on_the_tick_grid():
    symbols = ["BTC/USDT", "XRP/USDT", "FOO/USDT"]
    market = SimMarket(symbols, SimOptions(depth=50, trades_per_update=1.0, seed=42))
    # rebuilt only from the first snapshot and what was published
    mirror = {s: PlainBook(market.books[s].snapshot()) for s in symbols}
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
            assert max(book.bids) < min(book.asks)
            assert 40 <= len(book.bids) <= 52 and 40 <= len(book.asks) <= 52
        elif isinstance(event, BookTicker):  # sent when the best bid or ask changed: the mirror's top
            book = mirror[s]
            best_bid, best_ask = max(book.bids), min(book.asks)
            assert event.update_id == book.last_update_id
            assert (float(event.bid), float(event.bid_qty)) == (best_bid, book.bids[best_bid])
            assert (float(event.ask), float(event.ask_qty)) == (best_ask, book.asks[best_ask])
        else:
            assert isinstance(event, Trade), event
            assert event.side in ("buy", "sell") and float(event.amount) > 0
            assert last_trade[s] is None or event.trade_id == last_trade[s] + 1
            last_trade[s] = event.trade_id
    tick = {"BTC/USDT": 0.01, "XRP/USDT": 0.0001, "FOO/USDT": 0.01}
    for s in symbols:
        last_id, bids, asks = market.books[s].snapshot()
        assert mirror[s].levels() == (last_id, [(float(p), float(q)) for p, q in bids],
                                      [(float(p), float(q)) for p, q in asks])
        for price in list(mirror[s].bids) + list(mirror[s].asks):
            assert abs(price / tick[s] - round(price / tick[s])) < 1e-6
