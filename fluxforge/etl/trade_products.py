"""Trade products of one (exchange, symbol), fed the same chunks as the book engine.

Why here: the ETL's `SymbolFeed` (engines.py) already turns bronze into chunks in
exchange-time order (watermark, reorder window, carries, reset times), with
N segments == 1 segment.  `PairedEngine` lets the very same chunks also run the
trade kernels, so trade bars get every guarantee of the book features: state in
the checkpoint (`TradeProducts.get_state`, stored in the symbol's carry), parts
named after the segment, replay == live.  A chunk's books tell how far exchange
time has passed (everything older than the chunk's cut has been fed), so bars
close without waiting for the next trade.  Valid trades more than `max_gap_ms` apart
reset the products like a reset event at the later trade's time (features/time_gaps.py).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .._kernels.row_arrays import counted_trades, time_max
from ..config import TradeOptions
from ..features import book_rows, ticker_layout, trade_layout, trade_rows
from ..features.book_rows import BookRows
from ..features.pending_tables import PendingTable
from ..features.time_gaps import GapClock
from ..features.trade_rows import TradeRows
from .naming import product_tree
from .ticker_products import TickerProducts
from .ticker_rows import TickerRows

STATE_VERSION = 2  # 2: per-trade features (trade_features.pyx), ticker features ("ticker") and the gap clock
Products = dict[tuple[str, int], pa.Table | PendingTable]  # (tree, parameter e.g. duration s) -> rows


def options_for(base: TradeOptions, overrides: dict, key: tuple[str, str]) -> TradeOptions:
    """etl.trades with etl.symbol_overrides["exchange:SYMBOL"] applied."""
    extra = overrides.get(f"{key[0]}:{key[1]}")
    return TradeOptions(**{**base.model_dump(), **extra}) if extra else base


def product_trees(options: TradeOptions) -> set[str]:
    """The products `TradeProducts(options)` makes, named as their features/ trees (naming.product_tree):
    trade bars per duration, volume and dollar bars when their size is set, per-trade rows when
    enabled, the ticker features always (live/catalog.py refuses subscriptions to others)."""
    trees = {(trade_layout.TRADE_BARS, int(d)) for d in options.bar_durations} | {(ticker_layout.TICKER, 0)}
    trees |= {(tree, 0) for tree, size in ((trade_layout.VOLUME_BARS, options.volume_bar_size),
                                           (trade_layout.DOLLAR_BARS, options.dollar_bar_size)) if size > 0}
    if options.per_trade:
        trees.add((trade_layout.TRADES, 0))
    return {product_tree(tree, param) for tree, param in trees}


class TradeProducts:
    """Trade time bars, volume and dollar bars, per-trade rows of one symbol; streaming, checkpointable."""

    def __init__(self, options: TradeOptions | None = None, max_gap_ms: int | None = None):
        from .._kernels.trade_bars import InfoBarEngine, TradeBarEngine  # compiled: imported when first needed
        from .._kernels.trade_features import TradeFeatureEngine

        self.options = options or TradeOptions()
        self._gaps = GapClock(max_gap_ms)  # trades this far apart reset like an event (etl.max_gap_seconds)
        self._bars = TradeBarEngine([int(d) * 1000 for d in self.options.bar_durations])
        self._info = {tree: InfoBarEngine(size, tree == trade_layout.DOLLAR_BARS)
                      for tree, size in ((trade_layout.VOLUME_BARS, self.options.volume_bar_size),
                                         (trade_layout.DOLLAR_BARS, self.options.dollar_bar_size)) if size > 0}
        self._per_trade = TradeFeatureEngine([int(h) * 1000 for h in self.options.horizons]) \
            if self.options.per_trade else None
        self._ticker = TickerProducts(self.options.ticker_horizons)
        self.deferred = False  # bars and ticker rows as PendingTables (features/pending_tables.py)

    def _kernels(self) -> dict:
        """Every kernel by its name in the checkpoint."""
        return {"bars": self._bars, **self._info, "ticker": self._ticker,
                **({trade_layout.TRADES: self._per_trade} if self._per_trade else {})}

    def stats(self) -> dict[str, int]:
        return self._bars.stats()

    def ticker_stats(self) -> dict[str, int]:
        """The ticker kernel's counters (late, duplicate, crossed, missing a side): ticker_products.TickerProducts."""
        return self._ticker.stats()

    def process(self, trades: TradeRows | pa.Table | None, resets: list[int] | None = None,
                until: int | None = None, tickers: TickerRows | pa.Table | None = None) -> Products:
        """Feed time-sorted trades (etl/trade_rows.py, or a table of bronze columns), tickers and resets;
        close bars that end by `until` (ms, exchange time)."""
        fed = TradeRows.from_table(trades) if isinstance(trades, pa.Table) else (trades or trade_rows.EMPTY)
        tts, px, amt, side = fed.ts, fed.price, fed.amount, fed.side
        valid = counted_trades(px, amt)  # the trades the kernels count
        res = _sorted_times(resets, self._gaps.resets(tts[valid]))
        limit = np.iinfo(np.int64).min if until is None else int(until)
        out = self._tables(self._bars.process(tts, px, amt, side, res, limit))
        for tree, kernel in self._info.items():
            rows = kernel.process(tts, px, amt, side, res)
            if len(rows):
                out[(tree, 0)] = trade_layout.info_bar_table(rows, later=self.deferred)
        if self._per_trade is not None:
            rows, index = self._per_trade.process(tts, px, amt, side, res)
            if len(rows):
                out[(trade_layout.TRADES, 0)] = trade_layout.per_trade_table(
                    self.options.horizons, rows, pa.array(fed.ids[index], pa.string()), side[index])
        # tickers reset on events only: a pause in trading (the trade clock's gaps) says nothing about quotes
        ticker_rows = self._ticker.process(tickers, _sorted_times(resets), later=self.deferred)
        if ticker_rows is not None:
            out[(ticker_layout.TICKER, 0)] = ticker_rows
        return out

    def _tables(self, blocks: list[np.ndarray]) -> Products:
        """Closed bars as tables; outputs without a row this chunk are left out."""
        return {(trade_layout.TRADE_BARS, int(d)): trade_layout.trade_bar_table(int(d), rows, later=self.deferred)
                for d, rows in zip(self.options.bar_durations, blocks) if len(rows)}

    def get_state(self) -> bytes:
        kernels = self._kernels()
        return json.dumps({"version": STATE_VERSION, "options": self.options.model_dump(mode="json"),
                           "max_gap_ms": self._gaps.max_gap_ms, "last_trade_ts": self._gaps.last,
                           **{name: {k: base64.b64encode(v).decode("ascii") for k, v in kernel.get_state().items()}
                              for name, kernel in kernels.items()}}).encode()

    @classmethod
    def from_state(cls, data: bytes, options: TradeOptions | None = None,
                   max_gap_ms: int | None = None) -> "TradeProducts":
        products = cls(options, max_gap_ms)
        try:
            payload = json.loads(data)
            if payload.get("version") != STATE_VERSION:
                raise ValueError("unsupported trade-products checkpoint version")
            if payload["options"] != products.options.model_dump(mode="json"):
                raise ValueError("checkpoint was written with different trade options")
            if payload.get("max_gap_ms") != max_gap_ms:
                raise ValueError("checkpoint was written with a different max_gap_ms")
            last = payload.get("last_trade_ts")
            products._gaps.last = None if last is None else int(last)
            for name, kernel in products._kernels().items():
                kernel.set_state({k: base64.b64decode(v) for k, v in payload[name].items()})
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"corrupt trade-products checkpoint: {exc!r}") from None
        return products


@dataclass
class PairedResult:
    hf: pa.Table | None
    bars: dict
    products: Products = field(default_factory=dict)


_NO_TIMES = np.zeros(0, dtype=np.int64)  # read only by the kernels: shared


def _sorted_times(*lists) -> np.ndarray:
    """The distinct times of `lists` (lists, arrays or None) in order, as the kernels take resets
    (most calls have none)."""
    given = [t for t in lists if t is not None and len(t)]
    if not given:
        return _NO_TIMES
    return np.asarray(sorted(set().union(*(map(int, t) for t in given))), dtype=np.int64)


class PairedEngine:
    """The book engine and the trade products of one symbol behind the engine's `process()`."""

    def __init__(self, engine, products: TradeProducts):
        self.engine = engine
        self.products = products

    def stats(self) -> dict[str, int]:
        """The book engine's counters (late rows, ...), which the ETL reads per segment."""
        stats = getattr(self.engine, "stats", None)  # test engines may count nothing
        return stats() if stats is not None else {}

    def ticker_stats(self) -> dict[str, int]:
        return self.products.ticker_stats()

    def process(self, books: BookRows | None, trades: TradeRows | pa.Table | None = None,
                resets: list[int] | None = None, tickers: TickerRows | pa.Table | None = None,
                complete_before: int | None = None) -> PairedResult:
        result = self.engine.process(books, trades, resets=resets, complete_before=complete_before)
        until = None
        if books is not None and len(books):  # NULL (no time: rows the engine holds) is the smallest int64
            newest = time_max(books.ts)
            until = None if newest == book_rows.NULL else newest
        return PairedResult(result.hf, result.bars, self.products.process(trades, resets, until, tickers))
