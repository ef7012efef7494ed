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

from ..features import book_arrays, ticker_layout


class TickerProducts:
    """The ticker kernel of one symbol behind Arrow tables; streaming, checkpointable."""

    def __init__(self, horizons: list[int]):
        from .._kernels.ticker_features import TickerEngine  # compiled: imported when first needed

        self.horizons = [int(h) for h in horizons]
        self._kernel = TickerEngine([h * 1000 for h in self.horizons])

    def stats(self) -> dict[str, int]:
        return self._kernel.stats()

    def process(self, tickers: pa.Table | None, resets: np.ndarray) -> pa.Table | None:
        """Feed time-sorted ticker rows (bronze columns) and sorted resets (ms); the rows they make."""
        if tickers is None or tickers.num_rows == 0:
            ts = np.zeros(0, dtype=np.int64)
            values = np.zeros((0, len(ticker_layout.TICKER_INPUTS)), dtype=np.float64)
        else:
            ts = np.ascontiguousarray(book_arrays.int64_column(tickers, "timestamp"))
            values = np.ascontiguousarray(np.column_stack(
                [book_arrays.float_column(tickers, c) for c in ticker_layout.TICKER_INPUTS]))
        rows = self._kernel.process(ts, values, np.ascontiguousarray(resets, dtype=np.int64))
        return ticker_layout.ticker_table(self.horizons, rows) if len(rows) else None

    def get_state(self) -> dict[str, bytes]:
        return self._kernel.get_state()

    def set_state(self, state: dict[str, bytes]) -> None:
        self._kernel.set_state(state)
