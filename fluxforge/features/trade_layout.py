"""Names and types of the trade-product columns, and where each tree goes.

Why a module: the Cython trade-bar kernel (cython_ext/trade_bars.pyx) writes a
dense float64 row whose field order is fixed there; this is the single Python
place that names those fields, types them into Arrow tables and declares each
output tree (`TREES`), so a new trade output is a kernel plus an entry here, not
a new pipeline (docs/adding-a-feature.md).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from .layout import TS_TYPE

# Kernel row order (trade_bars.pyx `_emit`); `duration` is added after `timestamp`.
TRADE_BAR_FIELDS = [
    "timestamp", "open", "high", "low", "close", "volume", "dollar_volume", "vwap", "trade_count",
    "buy_volume", "sell_volume", "buy_count", "sell_count", "trade_imbalance", "realized_variance",
    "log_return", "max_trade", "is_empty", "unknown_side_count",
]
TRADE_BAR_INT = {"trade_count", "buy_count", "sell_count", "unknown_side_count"}

TRADE_BARS = "trade_bars"
TREES = (TRADE_BARS,)  # every trade-product tree, in write order


def trade_bar_table(duration_s: int, rows: np.ndarray) -> pa.Table:
    """Typed trade-bar table from the kernel's (bars x fields) float64 block."""
    if rows.shape[1] != len(TRADE_BAR_FIELDS):
        raise ValueError(f"trade-bar block has {rows.shape[1]} fields, layout names {len(TRADE_BAR_FIELDS)}")
    out: dict[str, pa.Array] = {}
    for name, values in zip(TRADE_BAR_FIELDS, rows.T):
        if name == "timestamp":
            out[name] = pa.array(values.astype(np.int64), type=pa.int64()).cast(TS_TYPE)
            out["duration"] = pa.array(np.full(len(values), duration_s, dtype=np.int32))
        elif name in TRADE_BAR_INT:
            out[name] = pa.array(values.astype(np.int64))
        elif name == "is_empty":
            out[name] = pa.array(values != 0.0)
        else:
            out[name] = pa.array(values)
    return pa.table(out)

