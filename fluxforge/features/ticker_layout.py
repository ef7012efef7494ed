"""Names and types of the ticker-feature columns (features/ticker/).

Why a module: the Cython ticker kernel (cython_ext/ticker_features.pyx) writes a dense
float64 row whose field order is fixed there; this is the single Python place that
names those fields and types them into an Arrow table (docs/adding-a-feature.md).
"""
from __future__ import annotations

from functools import partial

import numpy as np
import pyarrow as pa

from .layout import typed_bars
from .pending_tables import PendingTable

TICKER = "ticker"  # tree name under features/ (etl/naming.py trade_partition, no interval)

# Kernel row order (ticker_features.pyx `_ticker`), then TICKER_ROLLING per horizon.
TICKER_FIELDS = ["timestamp", "bid", "ask", "mid_price", "spread", "relative_spread", "volume_imbalance",
                 "last", "vwap", "base_volume", "quote_volume"]
TICKER_ROLLING = ["mid_mean_{h}s", "mid_std_{h}s", "spread_mean_{h}s", "vol_imbalance_mean_{h}s"]
# bronze ticker columns the kernel reads, in the order of its `values` block
TICKER_INPUTS = ["bid", "ask", "bid_size", "ask_size", "last", "vwap", "base_volume", "quote_volume"]


def ticker_fields(horizons: list[int]) -> list[str]:
    """Every column of a ticker-feature row for these horizons (seconds), in kernel order."""
    return TICKER_FIELDS + [name.format(h=int(h)) for h in horizons for name in TICKER_ROLLING]


def ticker_table(horizons: list[int], rows: np.ndarray, later: bool = False) -> pa.Table | PendingTable:
    """Typed ticker-feature table from the kernel's (tickers x fields) float64 block
    (later: a non-empty one as a PendingTable, features/pending_tables.py)."""
    if later and len(rows):
        horizons = [int(h) for h in horizons]
        return PendingTable(("ticker", tuple(horizons)), partial(ticker_table, horizons), (rows,), (0,), len(rows))
    table = typed_bars(ticker_fields(horizons), rows, np.zeros(len(rows), dtype=np.int32), set())
    return table.drop_columns(["duration"])
