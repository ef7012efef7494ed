"""The top-N window of a book that a depth-limited feed (OKX `books`, 400 levels) serves.

Why: OKX's `books` channel is a 400-level book: the subscribe snapshot holds
400 levels a side, and each update carries the changes of that 400-level book,
so a level leaving the window (pushed out or deleted) is sent with size 0 and
one entering it (the 401st moving up) is sent as an add.  Then snapshot + every
update rebuilds exactly the book the exchange's CRC32 checksum covers, with no
trimming on the client side.  The hub keeps one window per symbol (once an OKX
client subscribed it) and advances it with every book update, so every OKX
connection shares the same diff.
"""
from __future__ import annotations

import heapq

from .events import BookUpdate, Level


def _top(keys, depth: int, best_high: bool) -> list[float]:
    return heapq.nlargest(depth, keys) if best_high else heapq.nsmallest(depth, keys)


class TopWindow:
    """The best `depth` levels of each side of one book, and the diff of the last update."""

    __slots__ = ("depth", "bids", "asks", "diff")

    def __init__(self, full_bids: dict, full_asks: dict, depth: int):
        self.depth = depth
        self.bids = {k: full_bids[k] for k in _top(full_bids, depth, True)}
        self.asks = {k: full_asks[k] for k in _top(full_asks, depth, False)}
        self.diff: tuple[list[Level], list[Level]] = ([], [])

    def advance(self, full_bids: dict, full_asks: dict, update: BookUpdate) -> None:
        """The full book has applied `update`: move the window and keep the changes in `diff`."""
        self.bids, bid_diff = self._side(self.bids, full_bids, update.bids, True)
        self.asks, ask_diff = self._side(self.asks, full_asks, update.asks, False)
        self.diff = (bid_diff, ask_diff)

    def _side(self, view: dict, full: dict, touched: list[Level], best_high: bool) -> tuple[dict, list[Level]]:
        depth = self.depth
        touched_keys = [float(p) for p, _ in touched]
        if len(view) < depth:  # the window held the whole side: every level is old or touched
            candidates = {k for k in view if k in full}.union(k for k in touched_keys if k in full)
        else:
            worst = min(view) if best_high else max(view)
            inside = (lambda k: k >= worst) if best_high else (lambda k: k <= worst)
            candidates = {k for k in view if k in full}.union(k for k in touched_keys if k in full and inside(k))
            if len(candidates) < depth:  # levels beyond the old window move up into it
                candidates = full
        new = {k: full[k] for k in _top(candidates, depth, best_high)}
        diff = [(view[k][0], "0") for k in view if k not in new]
        diff += [lv for k, lv in new.items() if view.get(k) != lv]
        return new, diff
