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

from .layout import TS_TYPE, typed_bars
from .pending_tables import PendingTable

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
# tree names under features/ (etl/naming.py trade_partition: trade_bars/ adds interval=<d>s; trades/ below)


def trade_bar_table(duration_s: int, rows: np.ndarray, later: bool = False) -> pa.Table | PendingTable:
    """Typed trade-bar table from the kernel's (bars x fields) float64 block; `duration` int32 seconds."""
    return typed_bars(TRADE_BAR_FIELDS, rows, np.full(len(rows), duration_s, dtype=np.int32), TRADE_BAR_INT,
                      later=later)


def info_bar_table(rows: np.ndarray, later: bool = False) -> pa.Table | PendingTable:
    """Typed volume/dollar-bar table; `duration` is end_ts - start_ts in seconds (float64)."""
    fields = INFO_BAR_FIELDS
    if rows.ndim != 2 or rows.shape[1] != len(fields):
        raise ValueError(f"kernel block has shape {rows.shape}, layout names {len(fields)} fields")
    start, end = rows[:, fields.index("start_ts")], rows[:, fields.index("end_ts")]
    return typed_bars(fields, rows, (end - start) / 1000.0, TRADE_BAR_INT, INFO_BAR_TIMES, later=later)


# Per-trade rows (trade_features.pyx TradeFeatureEngine): the kernel's block holds PER_TRADE_KERNEL then,
# per horizon, PER_TRADE_ROLLING; `trade_id`, `side` and `is_buy` come from the input trades.
TRADES = "trades"
PER_TRADE_KERNEL = ["timestamp", "price", "amount", "dollar_volume", "signed_volume", "log_return"]
PER_TRADE_ROLLING = ["vwap", "volume", "dollar_volume", "trade_count", "buy_ratio", "realized_var", "tfi"]


def per_trade_fields(horizons: list[int]) -> list[str]:
    """Column names of features/trades/ in file order, for `etl.trades.horizons` (whole seconds)."""
    return (["timestamp", "trade_id", "price", "amount", "side", "is_buy"] + PER_TRADE_KERNEL[3:]
            + [f"{name}_{int(h)}s" for h in horizons for name in PER_TRADE_ROLLING])


def per_trade_table(horizons: list[int], rows: np.ndarray, trade_ids: pa.Array, side: np.ndarray) -> pa.Table:
    """Typed per-trade table from the kernel's block, the rows' trade ids and sides (+1/-1/0).

    An unknown side (0) is null in `side`, `is_buy` and `signed_volume`."""
    kernel = PER_TRADE_KERNEL + [f"{name}_{int(h)}s" for h in horizons for name in PER_TRADE_ROLLING]
    if rows.ndim != 2 or rows.shape[1] != len(kernel) or len(trade_ids) != len(rows) or len(side) != len(rows):
        raise ValueError(f"kernel block has shape {rows.shape}, layout names {len(kernel)} fields")
    cols = dict(zip(kernel, rows.T))
    unknown = side == 0
    out: dict[str, pa.Array] = {
        "timestamp": pa.array(cols["timestamp"].astype(np.int64), type=pa.int64()).cast(TS_TYPE),
        "trade_id": trade_ids.cast(pa.string()),
        "price": pa.array(cols["price"]), "amount": pa.array(cols["amount"]),
        "side": pa.array(np.where(side > 0, "buy", "sell"), type=pa.string(), mask=unknown),
        "is_buy": pa.array(side > 0, mask=unknown),
        "dollar_volume": pa.array(cols["dollar_volume"]),
        "signed_volume": pa.array(cols["signed_volume"], mask=unknown),
        "log_return": pa.array(cols["log_return"]),
    }
    for name in kernel[len(PER_TRADE_KERNEL):]:
        out[name] = pa.array(cols[name].astype(np.int64) if name.startswith("trade_count_") else cols[name])
    return pa.table(out)
