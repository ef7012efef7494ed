"""The book engine's book messages as numpy arrays, not an Arrow table.

Why: the live ETL feeds every symbol a chunk per collector flush, a few book rows each, and
each Arrow step on them -- a split per symbol, a merge with the rows held back at the
watermark, a slice, the list columns turned into arrays again by the engine -- costs
microseconds whatever the rows.  `BookRows` is what the ETL makes of a flush's books once for
all symbols (etl/book_rows.py), what its feed holds at the watermark (etl/engines.py), what
`FeatureEngine` holds back (features/engine.py) and what the rebuild kernel reads; only
checkpoints store a table (`to_table` / `from_table`).

Each side's levels are flat price and size arrays with per-row offsets into them, as
`BookRebuild.process` reads them: a slice of rows slices the offsets only.  A null time,
nonce or prev_nonce is `NULL` (the rebuild's "no nonce"), a null level NaN and a null list
an empty one (book_arrays.book_messages).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import book_arrays
from .._kernels.row_arrays import concat_levels, concat_pairs
from .time_rows import TimeRows

NULL = book_arrays.NULL_NONCE  # a null time, nonce or prev_nonce: the smallest int64
_KIND_NAMES = np.array(book_arrays.BOOK_KINDS, dtype=object)
_SIDES = (("bid_px", "bid_sz"), ("ask_px", "ask_sz"))


class BookRows(TimeRows):
    """Book messages of one symbol (or of a chunk of several) in one order; `then` (TimeRows) merges
    time-sorted ones.  Its levels are not one entry per row: _cut, take and concat are its own."""

    __slots__ = ("ts", "recv", "kind", "nonce", "prev", "bid", "ask")

    def __init__(self, ts: np.ndarray, recv: np.ndarray, kind: np.ndarray, nonce: np.ndarray,
                 prev: np.ndarray, bid: tuple, ask: tuple):
        self.ts, self.recv = ts, recv          # int64 exchange ms (NULL: none), int64 receive ns
        self.kind = kind                       # int8: 0 snapshot, 1 delta
        self.nonce, self.prev = nonce, prev    # int64, NULL: none
        self.bid, self.ask = bid, ask          # (offsets[n + 1], prices, sizes) into flat float64 arrays

    def _cut(self, start: int, stop: int) -> "BookRows":
        """(TimeRows.slice) a slice of the rows' offsets: the flat level arrays are shared."""
        rows, levels = slice(start, stop), slice(start, stop + 1)  # a row's levels end at the next offset
        (bo, bpx, bsz), (ao, apx, asz) = self.bid, self.ask
        return BookRows(self.ts[rows], self.recv[rows], self.kind[rows], self.nonce[rows], self.prev[rows],
                        (bo[levels], bpx, bsz), (ao[levels], apx, asz))

    def take(self, index: np.ndarray) -> "BookRows":
        """The rows at `index` (positions or a boolean mask)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return BookRows(self.ts[index], self.recv[index], self.kind[index], self.nonce[index], self.prev[index],
                        _side_take(self.bid, index), _side_take(self.ask, index))

    def concat(self, more: "BookRows") -> "BookRows":
        """These rows, then `more`'s (in that order)."""
        if not len(self):
            return more
        if not len(more):
            return self
        return BookRows(*concat_pairs(self._rows(), more._rows()),  # compiled: a call, not a dozen (row_arrays.pyx)
                        concat_levels(*self.bid, *more.bid), concat_levels(*self.ask, *more.ask))

    def with_times(self, ts: np.ndarray) -> "BookRows":
        return BookRows(ts, self.recv, self.kind, self.nonce, self.prev, self.bid, self.ask)

    def _rows(self) -> tuple[np.ndarray, ...]:
        return self.ts, self.recv, self.kind, self.nonce, self.prev

    def messages(self) -> tuple:
        """`BookRebuild.process`'s arguments: kind, nonce, prev_nonce, per side (offsets, prices, sizes)."""
        return (self.kind, self.nonce, self.prev, *self.bid, *self.ask)

    def levels(self, index: np.ndarray) -> dict[str, pa.Array]:
        """The level lists of the rows at `index`, per LEVEL_COLUMNS (`keep_raw_arrays`)."""
        out = {}
        for (px_name, sz_name), side in zip(_SIDES, (self.bid, self.ask)):
            offsets, px, sz = _side_take(side, np.asarray(index, dtype=np.int64))
            offsets = pa.array(offsets.astype(np.int32))
            out[px_name] = pa.ListArray.from_arrays(offsets, pa.array(px, pa.float64()))
            out[sz_name] = pa.ListArray.from_arrays(offsets, pa.array(sz, pa.float64()))
        return out

    def to_table(self) -> pa.Table | None:
        """As a checkpoint stores them, the bronze columns without exchange and symbol (None: no rows)."""
        if not len(self):
            return None
        every = np.arange(len(self), dtype=np.int64)
        nullable = book_arrays.nullable_int64
        return pa.table({"timestamp": nullable(self.ts), "recv_ns": pa.array(self.recv, pa.int64()),
                         "kind": pa.array(_KIND_NAMES[self.kind], pa.string()),
                         "nonce": nullable(self.nonce), "prev_nonce": nullable(self.prev), **self.levels(every)})

    @classmethod
    def from_table(cls, table: pa.Table | None) -> "BookRows":
        """A table's book rows in its order (bronze's, a checkpoint's, what the engine is given);
        without `kind` (format 1) all snapshots, without `prev_nonce` or `recv_ns` NULL / 0.
        An unknown kind, or price and size lists of different lengths, is a ValueError."""
        if table is None or table.num_rows == 0:
            return EMPTY
        kind, nonce, prev, *sides = book_arrays.book_messages(table)
        names = table.column_names
        recv = book_arrays.int64_column(table, "recv_ns") if "recv_ns" in names else np.zeros(len(kind), np.int64)
        return cls(np.ascontiguousarray(book_arrays.int64_column(table, "timestamp")), recv, kind, nonce, prev,
                   tuple(sides[:3]), tuple(sides[3:]))


def _side_take(side: tuple, index: np.ndarray) -> tuple:
    """(offsets from 0, prices, sizes) of the rows at `index`, their levels copied in that order."""
    offsets, px, sz = side
    starts = offsets[index]
    lengths = offsets[index + 1] - starts
    out = np.zeros(len(index) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    pos = np.repeat(starts - out[:-1], lengths) + np.arange(int(out[-1]), dtype=np.int64)
    return out, px[pos], sz[pos]


_NO_LEVELS = (np.zeros(1, np.int64), np.zeros(0, np.float64), np.zeros(0, np.float64))
EMPTY = BookRows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int64),
                 np.zeros(0, np.int64), _NO_LEVELS, _NO_LEVELS)
BookRows.EMPTY = EMPTY
