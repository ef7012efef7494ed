"""Ticker features of one (exchange, symbol): bronze ticker rows in, features/ticker/ rows out.

Why beside the trade products: the ETL's `SymbolFeed` (engines.py) feeds the ticker
rows of a symbol in the same time-ordered chunks as its books and trades (watermark,
reorder window, carry, reset times), and `TradeProducts` owns one `TickerProducts`, so
ticker features share the checkpoint (its state travels in the trade products' state),
the parts named after the segment and replay == live with no pipeline of their own.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..features import ticker_layout
from ..features.pending_tables import PendingTable
from . import ticker_rows
from .ticker_rows import TickerRows

# What the ETL reports of a symbol's tickers per segment (`segment_done`, `fluxforge status`, the
# fluxforge_etl_ticker_rows_flagged metric): kind -> the TickerProducts.stats() counter.  Dropped: late,
# duplicate (and `untimed`, counted by the feed before the kernel); kept without a mid: crossed, missing_side.
TICKER_ISSUES = {"late": "late_dropped", "duplicate": "duplicates", "crossed": "crossed", "missing_side": "missing_side"}
TICKER_ISSUE_KINDS = ("late", "duplicate", "untimed", "crossed", "missing_side")

_QUOTES = [ticker_layout.TICKER_FIELDS.index("bid"), ticker_layout.TICKER_FIELDS.index("ask")]
_INF = float("inf")


class TickerProducts:
    """The ticker kernel of one symbol behind Arrow tables; streaming, checkpointable."""

    def __init__(self, horizons: list[int]):
        from .._kernels.ticker_features import TickerEngine  # compiled: imported when first needed

        self.horizons = [int(h) for h in horizons]
        self._kernel = TickerEngine([h * 1000 for h in self.horizons])
        self._missing_side = 0  # kept rows without a usable bid or ask (since this object was made)

    def stats(self) -> dict[str, int]:
        """The kernel's counters (tickers, late_dropped, duplicates, crossed, resets: since the checkpoint
        began) and `missing_side`: rows kept without a positive finite bid or ask (since this object was made)."""
        return {**self._kernel.stats(), "missing_side": self._missing_side}

    def process(self, tickers: TickerRows | pa.Table | None, resets: np.ndarray,
                later: bool = False) -> pa.Table | PendingTable | None:
        """Feed time-sorted ticker rows with exchange time (etl/ticker_rows.py, or a table of bronze
        columns) and sorted resets (ms); the rows they make (later: a PendingTable, features/pending_tables.py)."""
        if (tickers is None or not len(tickers)) and not len(resets):
            return None  # nothing for the kernel to do (most chunks of a symbol without tickers)
        if isinstance(tickers, pa.Table):
            tickers = TickerRows.from_table(tickers)
        tickers = tickers or ticker_rows.EMPTY
        rows = self._kernel.process(np.ascontiguousarray(tickers.ts), np.ascontiguousarray(tickers.values),
                                    np.ascontiguousarray(resets, dtype=np.int64))
        if len(rows):  # the kept rows' bid and ask: not both finite and positive (a row or two: no numpy)
            self._missing_side += sum(not (0 < bid < _INF and 0 < ask < _INF) for bid, ask in rows[:, _QUOTES].tolist())
        return ticker_layout.ticker_table(self.horizons, rows, later=later) if len(rows) else None

    def get_state(self) -> dict[str, bytes]:
        return self._kernel.get_state()

    def set_state(self, state: dict[str, bytes]) -> None:
        self._kernel.set_state(state)
