"""The book engine's and the trade products' trades as numpy arrays, not an Arrow table.

Why: the live ETL feeds every symbol a chunk per collector flush, a few trades each, and each
Arrow step on them -- a split per symbol, a merge with the trades held back, a slice, a column
converted again by each consumer -- costs microseconds whatever the rows.  `TradeRows` is what
the ETL makes of a chunk's trades once for all symbols (etl/trade_rows.py), what its feed holds
at the watermark (etl/engines.py), what `FeatureEngine` holds back (features/engine.py) and what
the kernels read; only checkpoints store a table (`to_table` / `from_table`).  A null price or
amount is NaN and a side other than buy/sell is 0, as the kernels read them (book_arrays.py).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import book_arrays
from .time_rows import TimeRows

_SIDE_NAMES = np.array(["sell", None, "buy"], dtype=object)  # side + 1 -> its name (0: null)


class TradeRows(TimeRows):
    """Trades of one symbol with an exchange time, sorted by it (stable)."""

    __slots__ = ("ts", "recv", "price", "amount", "side", "ids")

    def __init__(self, ts: np.ndarray, recv: np.ndarray, price: np.ndarray, amount: np.ndarray,
                 side: np.ndarray, ids: np.ndarray):
        self.ts, self.recv = ts, recv          # int64 exchange ms, int64 receive ns
        self.price, self.amount = price, amount  # float64, null as NaN
        self.side, self.ids = side, ids        # int8 +1 buy / -1 sell / 0; object: trade id or None

    def _columns(self) -> tuple[np.ndarray, ...]:
        return self.ts, self.recv, self.price, self.amount, self.side, self.ids

    def to_table(self) -> pa.Table | None:
        """As a checkpoint stores them (None: no rows)."""
        if not len(self):
            return None
        return pa.table({"timestamp": pa.array(self.ts, pa.int64()), "recv_ns": pa.array(self.recv, pa.int64()),
                         "trade_id": pa.array(self.ids, pa.string()), "price": pa.array(self.price, pa.float64()),
                         "amount": pa.array(self.amount, pa.float64()),
                         "side": pa.array(_SIDE_NAMES[self.side.astype(np.int64) + 1], pa.string())})

    @classmethod
    def from_table(cls, table: pa.Table | None) -> "TradeRows":
        """A table's trades, all with an exchange time and sorted (a checkpoint's, or what the
        engines' API is given once they are); without `recv_ns` or `trade_id` those are 0 / None."""
        if table is None or table.num_rows == 0:
            return EMPTY
        return cls(*columns(table))


EMPTY = TradeRows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.float64),
                  np.zeros(0, np.int8), np.zeros(0, object))
TradeRows.EMPTY = EMPTY


def columns(table: pa.Table) -> tuple[np.ndarray, ...]:
    """`TradeRows` fields of a table's rows, in its order (a null time: the smallest int64)."""
    n, names = table.num_rows, table.column_names
    ts = book_arrays.int64_column(table, "timestamp")
    recv = book_arrays.int64_column(table, "recv_ns") if "recv_ns" in names else np.zeros(n, np.int64)
    ids = table.column("trade_id").to_numpy(zero_copy_only=False) if "trade_id" in names else np.full(n, None)
    return (ts, recv, book_arrays.float_column(table, "price"), book_arrays.float_column(table, "amount"),
            np.ascontiguousarray(book_arrays.side_column(table)), np.asarray(ids, dtype=object))
