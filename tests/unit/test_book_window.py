"""The loopback's top-N book window (OKX's 400-level `books` feed) against a brute-force top N.

After every random update (adds, deletes, re-adds, levels far from and close to the
top), the window equals the best N levels of the full book, and applying the diff
it sends to the previous window gives the new one: snapshot + updates == the book.
"""
from __future__ import annotations

import random

from fluxforge.loopback.book import BookState
from fluxforge.loopback.book_window import TopWindow
from fluxforge.loopback.events import BookUpdate


def test_window_diffs_rebuild_the_top_levels_exactly():
    rng = random.Random(5)
    depth = 8
    book = BookState("X/Y")
    book.load(1, [(f"{100 - i}", "1") for i in range(12)], [(f"{101 + i}", "1") for i in range(3)])
    window = TopWindow(book.bids, book.asks, depth)
    client = ({k: lv[1] for k, lv in window.bids.items()}, {k: lv[1] for k, lv in window.asks.items()})
    for n in range(2, 3000):
        levels = [(f"{rng.randint(60, 100)}", rng.choice(["0", "0", "1", "2.5"])) for _ in range(rng.randint(0, 6))]
        asks = [(f"{rng.randint(101, 140)}", rng.choice(["0", "3"])) for _ in range(rng.randint(0, 4))]
        update = BookUpdate("X/Y", n, n, n, levels, asks)
        book.apply(update)
        window.advance(book.bids, book.asks, update)
        for side, diff in zip(client, window.diff):
            for p, q in diff:
                side.pop(float(p), None) if q == "0" else side.__setitem__(float(p), q)
        want_b = sorted(book.bids, reverse=True)[:depth]
        want_a = sorted(book.asks)[:depth]
        assert sorted(window.bids, reverse=True) == want_b and sorted(window.asks) == want_a, n
        assert client == ({k: book.bids[k][1] for k in want_b}, {k: book.asks[k][1] for k in want_a}), n
