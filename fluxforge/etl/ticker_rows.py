"""A symbol's ticker rows as numpy: a chunk's ticker table converted once for all its symbols.

Why: a symbol's ticker comes about once a second, and the live path feeds every symbol a chunk
per collector flush.  Taken through Arrow per symbol -- split off the chunk, merged with the rows
held at the watermark, sliced, then eight columns converted for the kernel -- one row cost ~100 us
a symbol and flush, a fifth of the live feed.  Here the chunk's columns are converted once
(`by_symbol`), a symbol's rows are slices of them, the rows a `SymbolFeed` holds (etl/engines.py)
stay numpy, and only the checkpoint's carry is a table (`to_table` / `from_table`).  The rows
and their order are the Arrow path's: sorted by exchange time, stable, the rows without one
counted and left out; a null value is NaN, as the kernel reads it.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..features import book_arrays
from ..features.ticker_layout import TICKER_INPUTS
from ..features.time_rows import TimeRows
from .bronze_reader import Key, timed_groups

_INPUTS = len(TICKER_INPUTS)


class TickerRows(TimeRows):
    """Ticker rows of one symbol with an exchange time, sorted by it (stable)."""

    __slots__ = ("ts", "recv", "values")

    def __init__(self, ts: np.ndarray, recv: np.ndarray, values: np.ndarray):
        self.ts, self.recv = ts, recv  # int64 exchange ms, int64 receive ns
        self.values = values           # float64 (rows, TICKER_INPUTS), null as NaN

    def _columns(self) -> tuple[np.ndarray, ...]:
        return self.ts, self.recv, self.values

    def to_table(self) -> pa.Table | None:
        """As the checkpoint's carry stores them (None: no rows)."""
        if not len(self):
            return None
        cols = {"timestamp": pa.array(self.ts, pa.int64()), "recv_ns": pa.array(self.recv, pa.int64())}
        cols.update({name: pa.array(self.values[:, i], pa.float64()) for i, name in enumerate(TICKER_INPUTS)})
        return pa.table(cols)

    @classmethod
    def from_table(cls, table: pa.Table | None) -> "TickerRows":
        """A carry's rows (all with an exchange time, sorted) -- or any ticker table's: `by_symbol`."""
        if table is None or table.num_rows == 0:
            return EMPTY
        return cls(*columns(table))


EMPTY = TickerRows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, _INPUTS), np.float64))
TickerRows.EMPTY = EMPTY


def columns(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`TickerRows` fields of a table's rows, in its order (a null time: the smallest int64)."""
    ts = book_arrays.int64_column(table, "timestamp")  # null: the smallest int64 (callers drop them)
    recv = book_arrays.int64_column(table, "recv_ns") if "recv_ns" in table.column_names \
        else np.zeros(table.num_rows, np.int64)  # a table given to the kernel's API: only the carry keeps it
    values = np.column_stack([book_arrays.float_column(table, c) for c in TICKER_INPUTS]) if table.num_rows \
        else np.zeros((0, _INPUTS), np.float64)
    return ts, recv, np.ascontiguousarray(values, dtype=np.float64)


def by_symbol(table: pa.Table | None) -> dict[Key, tuple[TickerRows, int]]:
    """A chunk's raw ticker rows per symbol: those with an exchange time, sorted by it, and how many
    had none (ordered, as the Arrow path did, by receive time among them, then left out)."""
    if table is None or table.num_rows == 0:
        return {}
    rows, groups = timed_groups(table)
    ts, recv, values = (column[rows] for column in columns(table))
    return {key: (TickerRows(ts[a:b], recv[a:b], values[a:b]), untimed) for key, a, b, untimed in groups}
