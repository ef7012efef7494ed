"""A chunk's raw book rows per symbol as `BookRows` (features/book_rows.py), converted once for all.

Why: the live path feeds every symbol a chunk per collector flush; splitting the chunk's Arrow
table per symbol and turning each symbol's few rows' level lists into arrays cost microseconds
per step whatever the rows.  Here the chunk's columns are converted once and each symbol's
rows are a slice of them, in the order bronze_reader.book_batch gives its tables: sorted
by time, stable, a row without exchange time given its symbol's next one (else the previous
one, else kept untimed and sorted at its receive time).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..features.book_rows import BookRows
from .bronze_reader import Key, fill_book_times, group_order, receive_ordered_times


def by_symbol(table: pa.Table | None) -> dict[Key, BookRows]:
    """Raw book rows (file order) as the engines take them: per symbol, sorted by time."""
    if table is None or table.num_rows == 0:
        return {}
    table = fill_book_times(table)
    ts, _recv = receive_ordered_times(table)
    order, groups = group_order(table, ts)
    rows = BookRows.from_table(table)
    if (np.diff(order) != 1).any():
        rows = rows.take(order)
    return {key: rows.slice(start, end) for key, start, end in groups}
