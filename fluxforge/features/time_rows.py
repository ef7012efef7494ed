"""Rows of one stream as parallel numpy arrays, sorted by exchange time: the base of the ETL's
book, trade and ticker rows (features/book_rows.py, trade_rows.py, etl/ticker_rows.py).

Why a base: the live ETL holds each symbol's rows at the watermark and merges a flush's new rows
into them, per symbol and flush; the three kinds of rows slice, take and merge alike, and the
merge's rule -- new rows after the held ones, a stable sort by time only when they start
earlier -- is written once.  A subclass lists its arrays (`_columns`, in its constructor's order,
each with one entry per row along its first axis) or, with arrays that are not per row (a book's
levels), overrides `_cut`, `take` and `concat`.
"""
from __future__ import annotations

import numpy as np

from .._kernels.row_arrays import concat_pairs


class TimeRows:
    """Rows sorted by `ts` (int64 exchange ms), stable."""

    __slots__ = ()
    ts: np.ndarray
    EMPTY: "TimeRows"  # the subclass's rows of none (its module's EMPTY)

    def _columns(self) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, start: int, stop: int | None = None):
        """Rows start..stop (non-negative; stop None: to the end).  All of them are these rows and none
        are EMPTY, without building either: the feed cuts each symbol's rows several times a flush, and
        most cuts keep all or nothing."""
        n = len(self.ts)
        if stop is None or stop > n:
            stop = n
        if start == 0 and stop == n:
            return self
        if start >= stop:
            return self.EMPTY
        return self._cut(start, stop)

    def _cut(self, start: int, stop: int):
        """Rows start..stop, 0 <= start < stop <= len (`slice` has ruled out all and none)."""
        return type(self)(*(c[start:stop] for c in self._columns()))

    def take(self, index: np.ndarray):
        """The rows at `index` (positions or a boolean mask)."""
        return type(self)(*(c[index] for c in self._columns()))

    def concat(self, more):
        """These rows, then `more`'s (in that order)."""
        if not len(self):
            return more
        if not len(more):
            return self
        return type(self)(*concat_pairs(self._columns(), more._columns()))  # one compiled call: np.concatenate's bytes

    def then(self, more):
        """These rows and `more` (later received; each sorted by time), as one stable sort by time."""
        rows = self.concat(more)
        if not len(self) or not len(more) or more.ts[0] >= self.ts[-1]:
            return rows
        return rows.take(np.argsort(rows.ts, kind="stable"))
