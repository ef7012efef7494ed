"""Names and types of the trade-product columns and the names of their trees.

Why a module: the Cython trade-bar kernel (cython_ext/trade_bars.pyx) writes a
dense float64 row whose field order is fixed there; this is the single Python
place that names those fields, types them into Arrow tables and names each
output tree, so a new trade output is a kernel plus an entry here, not
a new pipeline (docs/adding-a-feature.md).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from .layout import typed_bars

# Kernel row order (trade_bars.pyx `_emit`); `duration` is added after `timestamp`.
TRADE_BAR_FIELDS = [
    "timestamp", "open", "high", "low", "close", "volume", "dollar_volume", "vwap", "trade_count",
    "buy_volume", "sell_volume", "buy_count", "sell_count", "trade_imbalance", "realized_variance",
    "log_return", "max_trade", "is_empty", "unknown_side_count",
]
TRADE_BAR_INT = {"trade_count", "buy_count", "sell_count", "unknown_side_count"}

# Information-driven bars (trade_bars.pyx InfoBarEngine): `timestamp` is the completing trade's time.
INFO_BAR_FIELDS = TRADE_BAR_FIELDS + ["start_ts", "end_ts", "threshold"]
INFO_BAR_TIMES = frozenset({"timestamp", "start_ts", "end_ts"})

TRADE_BARS = "trade_bars"
VOLUME_BARS = "volume_bars"
DOLLAR_BARS = "dollar_bars"
# tree names under features/ (etl/naming.py trade_partition: trade_bars/ adds interval=<d>s)


def trade_bar_table(duration_s: int, rows: np.ndarray) -> pa.Table:
    """Typed trade-bar table from the kernel's (bars x fields) float64 block; `duration` int32 seconds."""
    return typed_bars(TRADE_BAR_FIELDS, rows, np.full(len(rows), duration_s, dtype=np.int32), TRADE_BAR_INT)


def info_bar_table(rows: np.ndarray) -> pa.Table:
    """Typed volume/dollar-bar table; `duration` is end_ts - start_ts in seconds (float64)."""
    fields = INFO_BAR_FIELDS
    if rows.ndim != 2 or rows.shape[1] != len(fields):
        raise ValueError(f"kernel block has shape {rows.shape}, layout names {len(fields)} fields")
    start, end = rows[:, fields.index("start_ts")], rows[:, fields.index("end_ts")]
    return typed_bars(fields, rows, (end - start) / 1000.0, TRADE_BAR_INT, INFO_BAR_TIMES)
