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
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..logs import get_logger
from . import chunk_log
from .bronze_reader import BadSegment, Key, SegmentReader
from .engines import EngineBank
from .hive_writer import PartWriter, prepare_table, split_by_day
from .naming import bars_partition, hf_partition, trade_partition
from .segment_feed import HeldOutputs, SegmentFeeder

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
    tickers: dict = field(default_factory=dict)  # ticker_products.TICKER_ISSUE_KINDS -> ticker rows
    tickers_by_symbol: dict = field(default_factory=dict)  # Key -> the same, for symbols that had tickers
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    outputs: dict | None = None  # with keep_outputs: SegmentFeeder.held (Key -> FeatureOutput of held blocks)
    state: dict | None = None  # the live path's bank's snapshot, when the segment was handed over (Handover.state)
    logged_counts: dict = field(default_factory=dict)  # (Key, product) -> rows of the live-logged chunks
    handover_refused: bool = False  # the live path's finish was fed other rows than the segment holds

    @property
    def rows_per_s(self) -> float:
        return (self.books + self.trades) / self.seconds if self.seconds > 0 else 0.0


def run_segment(seg_dir: Path, bank: EngineBank, features_root: Path, row_group_rows: int,
                batch_rows: int = BOOK_BATCH_ROWS, *, keys: Container[Key] | None = None,
                emit_range: tuple[int | None, int | None] | None = None,
                keep_outputs: bool = False, handover: "Handover | None" = None) -> SegmentResult:
    """Verify, compute and durably write one segment; raises BadSegment for unusable input.

    keys: only these (exchange, symbol) streams (None: all).  emit_range: only write
    rows with start <= timestamp ms < end (either side None: open).  keep_outputs: leave
    the rows in `result.outputs` (the live path publishes what it has not yet).  handover: the
    live path's feeder that already fed this segment (its logged chunks, then the rest) from the same
    checkpoint and finished it -- used (instead of `bank`, which is then stale) when the segment's log
    ends where its chunks stopped: only the parts are left to write."""
    t0 = time.monotonic()
    segment = seg_dir.name
    reader = SegmentReader(seg_dir, batch_rows=batch_rows)
    manifest = reader.verify()
    result = SegmentResult(segment)
    rows = chunk_log.channel_rows(manifest)
    chunks = chunk_log.plan(seg_dir, rows)
    finished = False
    if handover is not None and handover.rows != rows:
        log.warning("live_finish_mismatch", segment=segment, fed=handover.rows, rows=rows,
                    note="the live path finished the segment on other rows than it holds: computed again")
        handover, result.handover_refused = None, True
    if handover is not None and keys is None and chunks and chunks[-1] == handover.ends:
        feeder = handover.feeder  # the live path fed the logged chunks and the rest, and finished it
        result.state = handover.state
        finished = True
        result.logged_counts = handover.logged
    elif chunks:
        feeder = SegmentFeeder(bank, segment, keys)
        result.logged_counts = feed_logged(feeder, reader, chunks, rows, batch_rows)
    else:
        feeder = SegmentFeeder(bank, segment, keys)
        feeder.feed_chunk(reader.raw_book_batches(batch_rows), reader.raw_trades(), reader.raw_events(),
                          reader.raw_tickers())
    if not finished:
        feeder.finish()
    # a handed-over feeder's engines may have gone on with the next segment: its counts as it finished
    for key, n in (handover.totals if finished else feeder.totals()).items():
        setattr(result, key, n)
    held = feeder.held
    if keep_outputs:
        result.outputs = held
    outputs = HeldOutputs(held)  # read back a symbol at a time, as it is written
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


@dataclass
class Handover:
    """A segment the live path finished: its feeder, each journal's rows it fed in logged chunks,
    the rows per (symbol, product) of those chunks, its bank's snapshot right after the finish
    (the checkpoint's symbols: taken once, not twice), each channel's rows it fed in all
    (the rest came from the closed journals or the Parquet files: the job checks they match),
    and the feeder's `totals()` as it finished (its bank's engines go on with the next segment)."""

    feeder: SegmentFeeder
    ends: dict[str, int]
    logged: dict
    state: dict
    rows: dict[str, int]
    totals: dict


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


def feed_logged(feeder: SegmentFeeder, reader: SegmentReader, chunks: list[chunk_log.Ends],
                 rows: chunk_log.Ends, batch_rows: int, start: chunk_log.Ends | None = None) -> dict:
    """Feed the segment in the chunks the live path logged, then the rest as one chunk
    (`start`: rows of each channel already fed); returns the rows per (symbol, product)
    the logged chunks emitted (what the live path may have published)."""
    trades, events, tickers = reader.raw_trades(), reader.raw_events(), reader.raw_tickers()
    books = _row_ranges(reader.raw_book_batches(batch_rows))
    prev = dict(start) if start else dict.fromkeys(chunk_log.CHANNELS, 0)
    for _ in books(prev["orderbook"], batch_rows):
        pass  # skip what was fed
    logged = None
    for ends in [*chunks, rows]:
        if ends is rows:
            logged = feeder.row_counts()
        feeder.feed_chunk(books(ends["orderbook"] - prev["orderbook"], batch_rows),
                          _rows(trades, prev["trades"], ends["trades"]), _rows(events, prev["events"], ends["events"]),
                          _rows(tickers, prev["ticker"], ends["ticker"]))
        prev = ends
    return logged


def _rows(table: pa.Table | None, start: int, end: int) -> pa.Table | None:
    return None if table is None or end <= start else table.slice(start, end - start)


def _row_ranges(batches: Iterator[pa.Table]):
    """take(n, piece_rows): the next n rows of `batches` as pieces of piece_rows (the last shorter),
    cut from the range's start whatever the file's batches were; consumes the range fully."""
    buf: list[pa.Table] = []
    have = 0

    def take(n: int, piece_rows: int) -> Iterator[pa.Table]:
        nonlocal buf, have
        while n > 0:
            want = min(n, piece_rows)
            while have < want:
                t = next(batches, None)
                if t is None:
                    raise BadSegment("orderbook: fewer rows than its manifest lists")
                buf.append(t)
                have += t.num_rows
            table = pa.concat_tables(buf) if len(buf) > 1 else buf[0]
            yield table.slice(0, want)
            rest = table.slice(want)
            buf, have = ([rest] if rest.num_rows else []), rest.num_rows
            n -= want
    return take
