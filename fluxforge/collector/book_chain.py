"""Bronze never holds a book delta whose predecessor is missing.

Why this exists: a delta row only means something applied to the row before it.
Book rows can be lost *after* they were queued -- at flush time, when the disk is
full or a batch does not convert -- while the websocket readers keep queueing the
next deltas of the same book into the next buffer.  Those deltas continue a row
bronze will never hold.  The recorder is told (`Recorder.book_rows_lost`) so the
book's next message is written as a snapshot; until that snapshot row, the
writer drops the book's deltas here, each counted in a `dropped` event with the
reason the chain broke.  A rebuild of bronze therefore always starts from a
snapshot and every delta continues the row before it.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from ..bronze.schemas import BOOK_SNAPSHOT

Key = tuple[str, str]  # (exchange, symbol)


class BookChainGuard:
    def __init__(self) -> None:
        self.broken: dict[Key, str] = {}  # book -> why its chain broke (the `dropped` reason)

    def lost(self, books: Iterable[Key], reason: str) -> None:
        """The last queued row of each of `books` did not reach bronze."""
        for key in books:
            self.broken.setdefault(key, reason)

    def skip(self, key: Key, kind: str) -> str | None:
        """The rule for the next row of book `key`: the reason to drop it (a delta of a broken
        book), else None -- and a snapshot row of a broken book restarts it."""
        reason = self.broken.get(key)
        if reason is not None and kind == BOOK_SNAPSHOT:
            del self.broken[key]
            return None
        return reason

    def filter(self, buf):
        """`buf` (a `rows.BookBuffer`) without the deltas of broken books before their next
        snapshot row, and a Counter of how many were dropped per (exchange, symbol, reason).
        Free when no book is broken."""
        dropped: Counter[tuple[str, str, str]] = Counter()
        if not self.broken or not buf.rows:
            return buf, dropped
        keep = []
        exchanges, symbols, kinds = buf.cols["exchange"], buf.cols["symbol"], buf.cols["kind"]
        for i in range(buf.rows):
            key = (exchanges[i], symbols[i])
            reason = self.skip(key, kinds[i])
            if reason is not None:
                dropped[(*key, reason)] += 1
                continue
            keep.append(i)
        return (buf.select(keep) if dropped else buf), dropped
