"""Read one finished bronze segment as numpy arrays, refusing anything inconsistent.

Why a dedicated reader: the ETL must never compute features from a file that is
corrupt, truncated, of a foreign schema or different from what the collector
recorded in `manifest.json` -- such a segment goes to failed/ with a reason
(`BadSegment`).  And it must not hold a whole large segment in memory: books are
streamed in record batches and grouped by (exchange, symbol) with one stable
numpy lexsort + Arrow `take` per batch (no per-row Python); the feature engine
turns the list columns into 2-D arrays itself (fluxforge/features/book_arrays.py).
A book row without exchange time (e.g. a REST book snapshot) takes the exchange time
of the symbol's next book row in receive order (else the previous one), so the book
rebuild sees it in place; other rows without one are ordered by receive time, keep
their null and the engine skips them (and counts them).  Format 1 orderbook files
(no kind / prev_nonce / checksum: every row a top-N book) are read as snapshots.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..bronze import schemas as bronze
from ..bronze.finish import file_mismatch
from ..bronze.segments import MANIFEST

Key = tuple[str, str]  # (exchange, ccxt symbol)
LEVEL_COLUMNS = ("bid_px", "bid_sz", "ask_px", "ask_sz")


class BadSegment(Exception):
    """The segment cannot be processed; str(self) is the reason written to reason.txt."""


BOOK_COLUMNS = ["exchange", "symbol", "timestamp", "recv_ns", "kind", "nonce", "prev_nonce", *LEVEL_COLUMNS]
TRADE_COLUMNS = ["exchange", "symbol", "timestamp", "recv_ns", "trade_id", "price", "amount", "side"]
TICKER_COLUMNS = ["exchange", "symbol", "timestamp", "recv_ns", "bid", "bid_size", "ask", "ask_size", "last",
                  "base_volume", "quote_volume", "vwap"]  # what the ticker features read (features/ticker_layout.py)


def receive_ordered_times(table: pa.Table | pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """Exchange ms (null -> receive time in ms) and receive ns as int64 arrays."""
    recv = table.column("recv_ns").to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    ts_col = table.column("timestamp")
    if ts_col.null_count:
        ts = pc.fill_null(ts_col, pa.array(recv // 1_000_000)).to_numpy()
    else:
        ts = ts_col.to_numpy(zero_copy_only=False)
    return ts.astype(np.int64, copy=False), recv


def group_order(table: pa.Table, ts: np.ndarray) -> tuple[np.ndarray, list[tuple[Key, int, int]]]:
    """One stable order of all rows by ((exchange, symbol), time) and each key's [start, end) in it."""
    ex = pc.dictionary_encode(table.column("exchange")).combine_chunks()
    sym = pc.dictionary_encode(table.column("symbol")).combine_chunks()
    ex_codes = ex.indices.to_numpy().astype(np.int64)
    sym_codes = sym.indices.to_numpy().astype(np.int64)
    key_codes = ex_codes * max(len(sym.dictionary), 1) + sym_codes
    order = np.lexsort((ts, key_codes))
    sorted_keys = key_codes[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(sorted_keys)) + 1))
    ends = np.concatenate((starts[1:], [len(order)]))
    ex_names, sym_names = ex.dictionary.to_pylist(), sym.dictionary.to_pylist()
    groups = [((ex_names[ex_codes[order[s]]], sym_names[sym_codes[order[s]]]), int(s), int(e))
              for s, e in zip(starts, ends) if e > s]
    return order, groups


class SegmentReader:
    """A finished segment directory: verify() first, then trades()/reset_events()/book_batches()."""

    def __init__(self, seg_dir: str | Path, batch_rows: int = 16384):
        self.dir = Path(seg_dir)
        self.batch_rows = batch_rows
        self.manifest: dict = {}

    # -- validation -------------------------------------------------------------
    def verify(self) -> dict:
        """Check manifest, sizes, sha256, row counts and schemas; raise BadSegment(reason)."""
        mpath = self.dir / MANIFEST
        if not mpath.is_file():
            raise BadSegment(f"{MANIFEST} is missing")
        try:
            self.manifest = json.loads(mpath.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise BadSegment(f"{MANIFEST} is not valid JSON: {e}") from None
        channels = self.manifest.get("channels")
        if not isinstance(channels, dict):
            raise BadSegment(f"{MANIFEST} has no 'channels' mapping")
        for channel, entry in channels.items():
            self._verify_channel(channel, entry if isinstance(entry, dict) else {})
        for channel in bronze.CHANNEL_SCHEMAS:
            path = self.dir / bronze.channel_file(channel, finished=True)
            if path.exists() and channel not in channels:
                raise BadSegment(f"{path.name} is present but not listed in {MANIFEST}")
        return self.manifest

    def _listed_file(self, channel: str, entry: object) -> str:
        try:
            return bronze.listed_channel_file(channel, entry)
        except ValueError as e:
            raise BadSegment(f"{MANIFEST}: {e}") from None

    def _verify_channel(self, channel: str, entry: dict) -> None:
        name = self._listed_file(channel, entry)
        path = self.dir / name
        if not path.is_file():
            raise BadSegment(f"{name}: listed in {MANIFEST} but missing")
        why = file_mismatch(path, entry)
        if why:
            raise BadSegment(f"{name}: {why}")
        try:
            meta = pq.ParquetFile(path).metadata
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as e:
            raise BadSegment(f"{name}: not a readable Parquet file: {e}") from None
        if "rows" in entry and int(entry["rows"]) != meta.num_rows:
            raise BadSegment(f"{name}: {meta.num_rows} rows but {MANIFEST} says {entry['rows']}")
        _check_schema(name, schema, bronze.CHANNEL_SCHEMAS[channel],
                      optional=frozenset(bronze.BOOK_V2_COLUMNS) if channel == "orderbook" else frozenset())

    # -- data ---------------------------------------------------------------------
    def channel_path(self, channel: str) -> Path | None:
        """The finished file of `channel` the manifest lists (None: the segment has none)."""
        entry = (self.manifest.get("channels") or {}).get(channel)
        if entry is None:
            return None
        return self.dir / self._listed_file(channel, entry)

    def _read(self, channel: str, columns: list[str]) -> pa.Table | None:
        path = self.channel_path(channel)
        if path is None:
            return None
        try:
            return pq.ParquetFile(path, memory_map=False).read(columns=columns, use_threads=False)
        except (pa.ArrowException, OSError) as e:
            raise BadSegment(f"{path.name}: unreadable: {e}") from None

    def trades(self) -> dict[Key, pa.Table]:
        """All trades of the segment per symbol, sorted by time (trades are small next to books)."""
        return trades_by_symbol(self.raw_trades())

    def raw_trades(self) -> pa.Table | None:
        """The trades file's rows in file (= journal) order."""
        return self._read("trades", TRADE_COLUMNS)

    def raw_tickers(self) -> pa.Table | None:
        """The ticker file's rows in file (= journal) order."""
        return self._read("ticker", TICKER_COLUMNS)

    def raw_events(self) -> pa.Table | None:
        """The events file's rows in file (= journal) order."""
        return self._read("events", EVENT_COLUMNS)

    def reset_events(self) -> list[tuple[str, str | None, int]]:
        """(exchange, symbol or None for the whole exchange, recv_ns) of gap/resync/reconnect rows."""
        return reset_rows(self.raw_events())

    def book_batches(self) -> Iterator[dict[Key, pa.Table]]:
        """Stream the orderbook file in record batches, each split per symbol and sorted by time."""
        for table in self.raw_book_batches(self.batch_rows):
            yield book_batch(table)

    def raw_book_batches(self, batch_rows: int) -> Iterator[pa.Table]:
        """The orderbook file's rows in file (= journal) order, `batch_rows` at a time."""
        path = self.channel_path("orderbook")
        if path is None:
            return
        try:
            pf = pq.ParquetFile(path, memory_map=False, pre_buffer=False)
            present = set(pf.schema_arrow.names)
            columns = [c for c in BOOK_COLUMNS if c in present]
            for batch in pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False):
                yield pa.Table.from_batches([batch])
        except (pa.ArrowException, OSError) as e:
            raise BadSegment(f"{path.name}: unreadable: {e}") from None


EVENT_COLUMNS = ["exchange", "symbol", "recv_ns", "event"]


def timed_groups(table: pa.Table) -> tuple[np.ndarray, list[tuple[Key, int, int, int]]]:
    """The rows with an exchange time in one stable order by ((exchange, symbol), time), as positions
    in `table`, and per key: its [start, end) in that order and how many of its rows had no time (the
    trades and tickers the engines take: etl/trade_rows.py, etl/ticker_rows.py)."""
    order_ts, _recv = receive_ordered_times(table)
    order, groups = group_order(table, order_ts)
    timed = table.column("timestamp").is_valid().to_numpy(zero_copy_only=False)[order]
    kept = np.concatenate([[0], np.cumsum(timed)]).tolist()  # timed rows before each position of `order`
    return order[timed], [(key, kept[s], kept[e], (e - s) - (kept[e] - kept[s])) for key, s, e in groups]


def book_batch(table: pa.Table) -> dict[Key, pa.Table]:
    """Raw book rows (file order) as the engines take them: per symbol, timed, sorted by time."""
    table = table.select([c for c in BOOK_COLUMNS if c in table.column_names])
    return dict(_split(fill_book_times(_as_format2(table))))


def trades_by_symbol(table: pa.Table | None) -> dict[Key, pa.Table]:
    """Raw trade rows per symbol, sorted by time."""
    if table is None or table.num_rows == 0:
        return {}
    return dict(_split(table.select(TRADE_COLUMNS)))


def reset_rows(table: pa.Table | None) -> list[tuple[str, str | None, int]]:
    """(exchange, symbol or None, recv_ns) of the gap/resync/reconnect rows of raw event rows."""
    if table is None or table.num_rows == 0:
        return []
    mask = pc.is_in(table.column("event"), value_set=pa.array(sorted(bronze.RESET_EVENTS)))
    rows = table.filter(mask).select(EVENT_COLUMNS).to_pydict()  # a handful of rows: plain Python is fine
    return list(zip(rows["exchange"], rows["symbol"], rows["recv_ns"]))


def _split(table: pa.Table) -> Iterator[tuple[Key, pa.Table]]:
    """Rows of each (exchange, symbol), sorted by time (a null time sorts at its receive time).

    One `take` reorders the whole batch; each symbol is then a zero-copy slice."""
    if table.num_rows == 0:
        return
    ts, _recv = receive_ordered_times(table)
    order, groups = group_order(table, ts)
    body = table.drop_columns(["exchange", "symbol"])
    if (np.diff(order) != 1).any():
        body = body.take(pa.array(order))
    for key, start, end in groups:
        yield key, body.slice(start, end - start)




def _as_format2(table: pa.Table) -> pa.Table:
    """Format 1 book rows as format 2 snapshots (kind 'snapshot', no prev_nonce), so every
    book table the engines see, and carry across segments, has the same columns."""
    n = table.num_rows
    if "kind" not in table.column_names:
        table = table.append_column("kind", pa.array(np.full(n, bronze.BOOK_SNAPSHOT, dtype=object), pa.string()))
    if "prev_nonce" not in table.column_names:
        table = table.append_column("prev_nonce", pa.nulls(n, pa.int64()))
    return table


def fill_book_times(table: pa.Table) -> pa.Table:
    """Give each book row without exchange time the time of its symbol's next timed row in
    receive order (else the previous one); rows of a symbol with no timed row stay null."""
    ts_col = table.column("timestamp")
    if ts_col.null_count == 0:
        return table
    n = table.num_rows
    ex = pc.dictionary_encode(table.column("exchange")).combine_chunks()
    sym = pc.dictionary_encode(table.column("symbol")).combine_chunks()
    key = ex.indices.to_numpy().astype(np.int64) * max(len(sym.dictionary), 1) + sym.indices.to_numpy()
    recv = table.column("recv_ns").to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    order = np.lexsort((recv, key))
    valid = ts_col.is_valid().to_numpy(zero_copy_only=False)[order]
    ts = pc.fill_null(ts_col, 0).to_numpy(zero_copy_only=False).astype(np.int64)[order]
    k = key[order]
    pos = np.arange(n)
    nxt = np.minimum.accumulate(np.where(valid, pos, n)[::-1])[::-1]
    prv = np.maximum.accumulate(np.where(valid, pos, -1))
    use_next = (nxt < n) & (k[np.minimum(nxt, n - 1)] == k)
    use_prev = ~use_next & (prv >= 0) & (k[np.maximum(prv, 0)] == k)
    filled = np.where(use_next, ts[np.minimum(nxt, n - 1)], ts[np.maximum(prv, 0)])
    ok = valid | use_next | use_prev
    out_ts = np.empty(n, dtype=np.int64)
    out_ok = np.empty(n, dtype=bool)
    out_ts[order] = filled
    out_ok[order] = ok
    column = pa.array(out_ts, type=pa.int64(), mask=~out_ok)
    return table.set_column(table.schema.get_field_index("timestamp"), "timestamp", column)


def _check_schema(name: str, actual: pa.Schema, expected: pa.Schema, optional: frozenset = frozenset()) -> None:
    for field in expected:
        idx = actual.get_field_index(field.name)
        if idx < 0 and field.name in optional:
            continue
        if idx < 0:
            raise BadSegment(f"{name}: wrong schema: column {field.name!r} is missing")
        got = actual.field(idx).type
        if not got.equals(field.type):
            raise BadSegment(f"{name}: wrong schema: column {field.name!r} is {got}, expected {field.type}")
