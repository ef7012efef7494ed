"""A chunk's raw trades per symbol as `TradeRows` (features/trade_rows.py), converted once for all.

Why: the live path feeds every symbol a chunk per collector flush; splitting the chunk's Arrow
table per symbol and converting each symbol's few trades cost microseconds per step whatever
the rows.  Here the chunk's columns are converted once and each symbol's trades are a slice of
them, in the order the Arrow path gave: sorted by exchange time, stable, the trades without one
counted and left out.
"""
from __future__ import annotations

import pyarrow as pa

from ..features.trade_rows import TradeRows, columns
from .bronze_reader import Key, timed_groups


def by_symbol(table: pa.Table | None) -> dict[Key, tuple[TradeRows, int]]:
    """A chunk's raw trades per symbol: those with an exchange time, sorted by it, and how many had
    none (ordered, as the Arrow path did, by receive time among them, then left out)."""
    if table is None or table.num_rows == 0:
        return {}
    index, groups = timed_groups(table)
    rows = TradeRows(*columns(table)).take(index)
    return {key: (rows.slice(a, b), untimed) for key, a, b, untimed in groups}
