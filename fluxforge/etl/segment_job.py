"""One bronze segment through the feature engines into durable feature parts.

Why shared: the live service (`runner`) and `fluxforge replay` both call
`run_segment`, so replay produces exactly the files the service would.  The job
mutates the engine bank; on any error the caller restores the bank from the
snapshot it took before (the last checkpoint) -- nothing here is half-applied to
disk, because parts are committed only after every symbol has been computed.
`fluxforge backfill` calls it too, once per segment of one (host, exchange,
symbol) stream (`keys`), optionally emitting only rows inside a time range: the
same job, so a backfill writes exactly the files a replay writes.
"""
from __future__ import annotations

import time
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..logs import get_logger
from .bronze_reader import Key, SegmentReader
from .engines import EngineBank, FeatureOutput, SymbolFeed
from .hive_writer import PartWriter, prepare_table, split_by_day
from .naming import bars_partition, hf_partition, trade_partition
from .trade_products import PairedEngine

log = get_logger("fluxforge.etl")

# Book rows per record batch read from a segment.  Bounds memory: a 50 MB depth-20
# segment peaks at ~375 MB RSS with 16384 (~520 MB with 65536), for a few % more time.
BOOK_BATCH_ROWS = 16384


@dataclass
class SegmentResult:
    segment: str
    books: int = 0
    trades: int = 0
    hf_rows: int = 0
    bar_rows: int = 0
    late_dropped: int = 0       # rows older than what their symbol's engine had processed
    duplicate_trades: int = 0   # trades redelivered with an id already seen (etl/trade_dedupe.py)
    trade_rows: int = 0  # rows of the trade products (trade_bars/, ...)
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return (self.books + self.trades) / self.seconds if self.seconds > 0 else 0.0


def run_segment(seg_dir: Path, bank: EngineBank, features_root: Path, row_group_rows: int,
                batch_rows: int = BOOK_BATCH_ROWS, *, keys: Container[Key] | None = None,
                emit_range: tuple[int | None, int | None] | None = None) -> SegmentResult:
    """Verify, compute and durably write one segment; raises BadSegment for unusable input.

    keys: only these (exchange, symbol) streams (None: all).  emit_range: only write
    rows with start <= timestamp ms < end (either side None: open)."""
    t0 = time.monotonic()
    segment = seg_dir.name
    reader = SegmentReader(seg_dir, batch_rows=batch_rows)
    reader.verify()
    trades = reader.trades()
    events = _events_by_symbol(reader.reset_events())
    feeds: dict[Key, SymbolFeed] = {}

    before: dict[Key, dict] = {}

    def feed(key: Key) -> SymbolFeed:
        f = feeds.get(key)
        if f is None:
            st = bank.state(key)
            before[key] = _book_counters(st.engine)
            engine = PairedEngine(st.engine, st.products) if st.products is not None else st.engine
            f = feeds[key] = SymbolFeed(engine, st.carry, trades.get(key), _events_for(events, key),
                                        bank.reorder_ms)
        return f

    for batch in reader.book_batches():
        for key, books in batch.items():
            if keys is None or key in keys:
                feed(key).push(books)
    for key in sorted(set(trades) | _event_keys(events, bank, feeds)):
        if keys is None or key in keys:
            feed(key)
    result = SegmentResult(segment)
    outputs: dict[Key, FeatureOutput] = {}
    for key, f in sorted(feeds.items()):
        carry = f.finish()
        carry.products = bank.state(key).carry.products
        bank.state(key).carry = carry
        _log_book_events(segment, key, before.get(key, {}), _book_counters(f.engine))
        result.books += f.books_fed
        result.trades += f.new_trades
        result.late_dropped += f.late_dropped
        result.duplicate_trades += f.duplicate_trades
        outputs[key] = f.output
    writer = PartWriter(segment, row_group_rows)
    try:
        for (exchange, symbol), out in outputs.items():
            if out.hf:
                for day, part in split_by_day(_emitted(prepare_table(out.hf), emit_range)):
                    writer.add(hf_partition(features_root, exchange, symbol, day), part)
                    result.hf_rows += part.num_rows
            for duration, tables in sorted(out.bars.items()):
                for day, part in split_by_day(_emitted(prepare_table(tables), emit_range)):
                    writer.add(bars_partition(features_root, duration, exchange, symbol, day), part)
                    result.bar_rows += part.num_rows
            for (tree, param), tables in sorted(out.products.items()):
                for day, part in split_by_day(_emitted(prepare_table(tables), emit_range)):
                    writer.add(trade_partition(features_root, tree, param, exchange, symbol, day), part)
                    result.trade_rows += part.num_rows
        result.files = writer.commit()
    except BaseException:
        writer.abort()
        raise
    result.seconds = time.monotonic() - t0
    return result


def _emitted(table: pa.Table, emit_range: tuple[int | None, int | None] | None) -> pa.Table:
    """Rows inside [start, end) of exchange time (ms); all rows without a range."""
    if emit_range is None:
        return table
    ts = pc.cast(table.column("timestamp"), pa.int64())
    start, end = emit_range
    mask = None
    if start is not None:
        mask = pc.greater_equal(ts, start)
    if end is not None:
        before = pc.less(ts, end)
        mask = before if mask is None else pc.and_(mask, before)
    return table if mask is None else table.filter(mask)


_BOOK_EVENTS = ("book_mismatches", "book_gaps", "book_stale", "book_evicted", "book_bad_levels")


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
    """Symbols that must see this segment's events even without books in it."""
    keys = {k for k in events if k[1] is not None}
    exchanges = {k[0] for k in events if k[1] is None}
    keys |= {k for k in list(bank.symbols) + list(feeds) if k[0] in exchanges}
    return keys
