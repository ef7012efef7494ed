"""Feeding one segment's rows into the engine bank, chunk by chunk: the one computation.

Why shared: the segment job (`segment_job.run_segment`) and the live path
(`live_follow.LiveFollower`) both feed segments through a `SegmentFeeder`, so a
chunk of rows produces the same feature rows whichever of them feeds it.  A chunk
is raw rows of the three channels in journal order; its trades and reset events
are added to their symbols first, then its books are pushed `batch_rows` at a
time (engines.SymbolFeed applies the watermark).  A finished segment without a
live log is one chunk -- exactly the historical job as it always was; one with a
log is fed in the logged chunks and the rest as one more (etl/chunk_log.py).  The
engines it feeds return their rows unbuilt (features/pending_tables.py); a segment's outputs
are held unbuilt and merged as they accumulate over its chunks (features/table_blocks.py),
with a spill (the live path's) built and written to a scratch file as they grow, and built
when read back, a symbol at a time.  What the live path publishes of a chunk is built once
per product for all symbols (etl/live_rows.py).
"""
from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Mapping

import pyarrow as pa

from ..features import table_blocks
from ..logs import get_logger
from . import book_rows, ticker_rows, trade_rows
from .bronze_reader import Key, reset_rows
from .engines import EngineBank, FeatureOutput, SymbolFeed
from .naming import product_tree
from .ticker_products import TICKER_ISSUE_KINDS
from .trade_products import PairedEngine

log = get_logger("fluxforge.etl")

_BOOK_EVENTS = ("book_mismatches", "book_gaps", "book_stale", "book_evicted", "book_bad_levels")
Product = str  # the features/ tree of an output: "hf", "bars/interval=60s", "trade_bars/interval=60s", ...


def products(out: FeatureOutput) -> Iterator[tuple[Product, list[pa.Table]]]:
    """Each output of a symbol with the features/ tree its parts go to (etl/naming.py)."""
    if out.hf:
        yield "hf", out.hf
    for duration, tables in sorted(out.bars.items()):
        yield product_tree("bars", duration), tables
    for (tree, param), tables in sorted(out.products.items()):
        yield product_tree(tree, param), tables


class SegmentFeeder:
    """One segment's symbol feeds over `bank`; `feed_chunk()` any number of times, then `finish()`."""

    def __init__(self, bank: EngineBank, segment: str, keys: Container[Key] | None = None,
                 spill: table_blocks.Spill | None = None):
        self.bank = bank
        self.segment = segment
        self.keys = keys
        self.spill = spill  # where the held outputs' older blocks go (the live path: a long segment)
        self.feeds: dict[Key, SymbolFeed] = {}
        self._held: dict[Key, FeatureOutput] = {}  # the rows emitted so far, merged (table_blocks)
        self._levels: dict[tuple, list[int]] = {}  # merge levels of each of its lists
        self._before: dict[Key, dict] = {}
        self._events: dict[tuple[str, str | None], list[int]] = {}
        self._evented: set[Key] = set()

    def _wanted(self, key: Key) -> bool:
        return self.keys is None or key in self.keys

    def _feed(self, key: Key) -> SymbolFeed:
        f = self.feeds.get(key)
        if f is None:
            st = self.bank.state(key)
            for part in (st.engine, st.products):
                if hasattr(part, "deferred"):  # engine_class may be a test engine without it
                    part.deferred = True
            self._before[key] = _book_counters(st.engine)
            engine = PairedEngine(st.engine, st.products) if st.products is not None else st.engine
            f = self.feeds[key] = SymbolFeed(engine, st.carry, [], self.bank.reorder_ms)
        if key not in self._evented:  # this chunk's events reach a symbol before its rows
            self._evented.add(key)
            f.add_events(_events_for(self._events, key))
        return f

    def feed_chunk(self, books: Iterable[pa.Table], trades: pa.Table | None,
                   events: pa.Table | None, tickers: pa.Table | None = None) -> dict[Key, FeatureOutput]:
        """Feed raw rows (journal order; `books` already cut in push-sized pieces); the rows emitted
        (`_take`: `HeldOutputs` reads them as tables)."""
        self._events = _events_by_symbol(reset_rows(events))
        self._evented = set()
        for key in sorted(_event_keys(self._events, self.bank, self.feeds)):
            if self._wanted(key):
                self._feed(key)
        for key, (rows, untimed) in sorted(trade_rows.by_symbol(trades).items()):
            if self._wanted(key):
                self._feed(key).add_trades(rows, untimed)
        for key, (rows, untimed) in sorted(ticker_rows.by_symbol(tickers).items()):
            if self._wanted(key):
                self._feed(key).add_tickers(rows, untimed)
        for piece in books:
            for key, rows in book_rows.by_symbol(piece).items():
                if self._wanted(key):
                    self._feed(key).push(rows)
        return self._take()

    def finish(self) -> dict[Key, FeatureOutput]:
        """Feed up to the watermark, store every symbol's carry in the bank; the rows emitted."""
        for key, f in sorted(self.feeds.items()):
            carry = f.finish()
            carry.products = self.bank.state(key).carry.products
            self.bank.state(key).carry = carry
            _log_book_events(self.segment, key, self._before.get(key, {}), _book_counters(f.engine))
        return self._take()

    def _take(self) -> dict[Key, FeatureOutput]:
        """The rows emitted since the last call, per symbol: tables, or `PendingTable`s not built
        yet (the live path builds each product's once for all symbols: live_rows.live_products)."""
        out = {}
        for key, f in sorted(self.feeds.items()):
            chunk = f.take_output()
            if chunk.hf or chunk.bars or chunk.products:
                out[key] = chunk
        for key, chunk in out.items():
            self._keep(key, chunk)
        return out

    def _keep(self, key: Key, more: FeatureOutput) -> None:
        """Add a chunk's rows to the segment's outputs, merged as they accumulate: the live path feeds a
        segment a chunk per collector flush and holds its outputs until the segment job writes them
        (a table per symbol, product and flush grew the ETL by megabytes a second: table_blocks)."""
        into = self._held.setdefault(key, FeatureOutput())
        lists = [("hf", into.hf, more.hf)]
        lists += [(("bars", d), into.bars.setdefault(d, []), t) for d, t in more.bars.items()]
        lists += [(("products", k), into.products.setdefault(k, []), t) for k, t in more.products.items()]
        for name, held, tables in lists:
            levels = self._levels.setdefault((key, name), [])
            for table in tables:
                table_blocks.append(held, levels, table, spill=self.spill)

    @property
    def held(self) -> dict[Key, FeatureOutput]:
        """Every row emitted so far, per symbol, as held: tables, unbuilt tables and `table_blocks`
        blocks in emission order, each with `num_rows` (`table_blocks.table` reads one); lists
        copied, so later chunks do not change them."""
        return {key: FeatureOutput(list(out.hf), {d: list(ts) for d, ts in out.bars.items()},
                                   {k: list(ts) for k, ts in out.products.items()})
                for key, out in self._held.items()}

    @property
    def outputs(self) -> Mapping[Key, FeatureOutput]:
        """Every row emitted so far, per symbol: tables in emission order (the segment job writes them),
        each symbol's read back when it is looked up -- one symbol's rows in memory at a time."""
        return HeldOutputs(self.held)

    def row_counts(self) -> dict[tuple[Key, Product], int]:
        """Rows emitted so far per (symbol, product)."""
        return {(key, product): sum(t.num_rows for t in tables)
                for key, out in self._held.items() for product, tables in products(out)}

    def totals(self) -> dict:
        """The segment's counts (segment_job.SegmentResult fields): rows fed, rows dropped, ticker issues
        in total (`tickers`) and per symbol that had tickers (`tickers_by_symbol`)."""
        feeds = self.feeds.values()
        issues = {key: f.ticker_issues for key, f in sorted(self.feeds.items())}
        by_symbol = {key: c for key, c in issues.items() if self.feeds[key].new_tickers or any(c.values())}
        return {"books": sum(f.books_fed for f in feeds), "trades": sum(f.new_trades for f in feeds),
                "late_dropped": sum(f.late_dropped for f in feeds),
                "duplicate_trades": sum(f.duplicate_trades for f in feeds),
                "tickers": {k: sum(c[k] for c in by_symbol.values()) for k in TICKER_ISSUE_KINDS},
                "tickers_by_symbol": by_symbol}


class HeldOutputs(Mapping):
    """`SegmentFeeder.held` as tables, a symbol's read back (from memory or the spill) when looked up."""

    def __init__(self, held: dict[Key, FeatureOutput]):
        self._held = held

    def __getitem__(self, key: Key) -> FeatureOutput:
        out = self._held[key]
        return FeatureOutput(table_blocks.tables(out.hf), {d: table_blocks.tables(ts) for d, ts in out.bars.items()},
                             {k: table_blocks.tables(ts) for k, ts in out.products.items()})

    def __iter__(self) -> Iterator[Key]:
        return iter(self._held)

    def __len__(self) -> int:
        return len(self._held)


def pieces(table: pa.Table | None, batch_rows: int) -> list[pa.Table]:
    """A chunk's book rows cut in push-sized pieces from its start (both paths cut alike)."""
    if table is None or table.num_rows == 0:
        return []
    return [table.slice(i, batch_rows) for i in range(0, table.num_rows, batch_rows)]


def _book_counters(engine) -> dict:
    stats = engine.stats() if hasattr(engine, "stats") else {}
    return {k: int(stats.get(k, 0)) for k in _BOOK_EVENTS}


def _log_book_events(segment: str, key: Key, before: dict, after: dict) -> None:
    """One `book_rebuild_events` journald event per symbol and segment whose book rebuild saw a
    snapshot mismatch, a gap, a stale delta, an eviction or a bad level (counts in this segment)."""
    counts = {k: after[k] - before.get(k, 0) for k in after}
    if any(counts.values()):
        log.warning("book_rebuild_events", segment=segment, exchange=key[0], symbol=key[1], **counts)


def _events_by_symbol(rows: list[tuple[str, str | None, int]]) -> dict[tuple[str, str | None], list[int]]:
    out: dict[tuple[str, str | None], list[int]] = {}
    for exchange, symbol, recv_ns in rows:
        out.setdefault((exchange, symbol), []).append(int(recv_ns))
    return out


def _events_for(events: dict[tuple[str, str | None], list[int]], key: Key) -> list[int]:
    """A symbol's reset events: its own plus exchange-wide ones (symbol null)."""
    return events.get(key, []) + events.get((key[0], None), [])


def _event_keys(events: dict, bank: EngineBank, feeds: dict) -> set[Key]:
    """Symbols that must see this chunk's events even without books in it."""
    keys = {k for k in events if k[1] is not None}
    exchanges = {k[0] for k in events if k[1] is None}
    keys |= {k for k in bank.keys() + list(feeds) if k[0] in exchanges}
    return keys
