"""Reference book rebuild: the snapshot/delta rules of docs/features.md ("Book rebuild"), in plain Python.

Written from the rules, not from cython_ext/book_rebuild.pyx: a side is a dict
price -> size, sorted only when read.  Slow and obviously correct; the kernel is
compared with it message by message (tests/unit/test_book_rebuild.py) and on the
real captures.
"""
from __future__ import annotations

import math

NAN = float("nan")
SYNCED, SNAPSHOT, MISMATCH, GAP, STALE, RESYNC = 1, 2, 4, 8, 16, 32


def _usable(p, q) -> bool:
    return p is not None and q is not None and math.isfinite(p) and math.isfinite(q) and p > 0 and q >= 0


class ReferenceBook:
    """One symbol's book; `apply(row)` returns the status flags of that message."""

    def __init__(self, max_depth: int = 10**9):
        self.max_depth = max_depth
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.synced = False
        self.gapped = False
        self.nonce = None
        self.deltas_since_snapshot = 0
        self.evicted = 0
        self.mismatches = 0

    # best-first views
    def bid_levels(self):
        return sorted(self.bids.items(), key=lambda kv: -kv[0])

    def ask_levels(self):
        return sorted(self.asks.items())

    def _trim(self, side: dict, is_bid: bool) -> None:
        while len(side) > self.max_depth:
            worst = min(side) if is_bid else max(side)
            del side[worst]
            self.evicted += 1

    def _snapshot_side(self, prices, sizes, is_bid: bool):
        side: dict[float, float] = {}
        for p, q in zip(prices or [], sizes or []):
            if _usable(p, q) and q > 0:
                side[p] = q
        ordered = sorted(side.items(), key=(lambda kv: -kv[0]) if is_bid else (lambda kv: kv[0]))
        kept = ordered[:self.max_depth]
        self.evicted += len(ordered) - len(kept)
        return dict(kept)

    @staticmethod
    def _same_in_range(current: dict, snap: dict, is_bid: bool) -> bool:
        if not snap:
            return not current
        worst = min(snap) if is_bid else max(snap)
        inside = {p: q for p, q in current.items() if (p >= worst if is_bid else p <= worst)}
        return inside == snap

    def apply(self, kind: str, nonce, prev, bid_px, bid_sz, ask_px, ask_sz) -> int:
        if kind == "snapshot":
            bids = self._snapshot_side(bid_px, bid_sz, True)
            asks = self._snapshot_side(ask_px, ask_sz, False)
            status = SNAPSHOT | SYNCED
            comparable = (self.synced and self.deltas_since_snapshot > 0 and nonce is not None
                          and self.nonce is not None and nonce == self.nonce)
            if comparable and not (self._same_in_range(self.bids, bids, True)
                                   and self._same_in_range(self.asks, asks, False)):
                self.mismatches += 1
                status |= MISMATCH | RESYNC
            if self.gapped:
                status |= RESYNC
            self.bids, self.asks = bids, asks
            self.synced, self.gapped = True, False
            self.nonce = nonce
            self.deltas_since_snapshot = 0
            return status
        if not self.synced:
            return 0
        if nonce is not None and self.nonce is not None:
            linked = prev is not None and prev == self.nonce
            if not linked:
                if nonce <= self.nonce:
                    return STALE
                if prev is not None and prev > self.nonce:
                    self.synced, self.gapped = False, True
                    return GAP
        for side, prices, sizes, is_bid in ((self.bids, bid_px, bid_sz, True), (self.asks, ask_px, ask_sz, False)):
            for p, q in zip(prices or [], sizes or []):
                if not _usable(p, q):
                    continue
                if q == 0:
                    side.pop(p, None)
                else:
                    side[p] = q
                    self._trim(side, is_bid)
        self.nonce = nonce
        self.deltas_since_snapshot += 1
        return SYNCED


def rebuild_rows(rows: dict, max_depth: int = 10**9):
    """Apply every row of a column dict (kind, nonce, prev_nonce, bid_px, ...); yield (status, bids, asks)
    after each message (bids/asks best first, full depth)."""
    book = ReferenceBook(max_depth)
    n = len(rows["bid_px"])
    kinds = rows.get("kind") or ["snapshot"] * n
    prevs = rows.get("prev_nonce") or [None] * n
    for i in range(n):
        status = book.apply(kinds[i], rows["nonce"][i], prevs[i], rows["bid_px"][i], rows["bid_sz"][i],
                            rows["ask_px"][i], rows["ask_sz"][i])
        yield status, book.bid_levels(), book.ask_levels()


def within_band(bids, asks, widest_bps):
    """The levels the aggregate depth features use: the best level of each side and every level
    whose distance from mid is < the widest band edge."""
    if not bids or not asks or bids[0][0] > asks[0][0]:
        return bids, asks
    mid = (bids[0][0] + asks[0][0]) / 2
    return ([(p, q) for i, (p, q) in enumerate(bids) if i == 0 or (mid - p) / mid * 10000.0 < widest_bps],
            [(p, q) for i, (p, q) in enumerate(asks) if i == 0 or (p - mid) / mid * 10000.0 < widest_bps])
