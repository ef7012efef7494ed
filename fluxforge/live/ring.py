"""Published rows as chunks, and the ring of recent ones per (product, exchange, symbol).

Why chunks: the ETL publishes a table per product and symbol; fanning that one
object out to every subscriber and encoding it at most once per wire format
keeps `publish()` O(subscribers) with no per-row work on the ETL's loop.

Why a ring: "the last N minutes, then live" is answered from memory, so a
strategy can warm up its indicators without reading Parquet.  It is bounded
in exchange-time minutes and in rows per key (`etl.live.replay_*`), and in memory
for all keys together (`etl.live.replay_mb`: the other two grow with the symbols and
products; beyond it the chunks with the oldest rows go first, whatever their key, so
every key keeps about the same minutes, logged once as `live_replay_bounded`).  The
ring keeps what it needs of each chunk (publish order, rows, times: 41 bytes, `_Chunks`,
counted in the memory bound) and the rows
themselves as a few compacted tables per key (features/table_blocks.py): a table
per published chunk took ~80 KB for a 170-column hf row, 2 GB for the default 15
minutes of 20 symbols.  A replay cuts each chunk's rows back out of them, so a
cached encoding never outlives the fan-out.
"""
from __future__ import annotations

import heapq
from array import array
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..features import table_blocks
from ..logs import get_logger
from . import wire

log = get_logger("fluxforge.live")

Key = tuple[str, str, str]  # (product, exchange, symbol)


def _ms(table: pa.Table) -> np.ndarray:
    """The timestamp column as int64 ms (a view of a timestamp[ms] column: no compute call per publish)."""
    col = table.column("timestamp")
    if col.type == _TS_MS and col.null_count == 0:
        return col.to_numpy().view(np.int64)
    return pc.fill_null(pc.cast(col, pa.int64()), _NULL_MS).to_numpy()  # a null time: older than any


_TS_MS = pa.timestamp("ms", tz="UTC")
_NULL_MS = -(2 ** 63)
COLUMN_BYTES = 512  # an Arrow table's objects per column, however few its rows (features/table_blocks.py)


class Chunk:
    """Rows of one product and one (exchange, symbol), as published (seq: publish order)."""

    __slots__ = ("seq", "product", "exchange", "symbol", "table", "replay", "first_ms", "last_ms", "bytes",
                 "_frames", "_plain")

    def __init__(self, seq: int, product: str, exchange: str, symbol: str, table: pa.Table, replay: bool):
        self.seq, self.product, self.exchange, self.symbol = seq, product, exchange, symbol
        self.table, self.replay = table, replay
        self.first_ms = self.last_ms = None
        # the memory it holds, estimated without a compute call: ~80 kB for one 170-column hf row
        self.bytes = table.num_columns * (COLUMN_BYTES + 8 * table.num_rows)
        if table.num_rows:
            ms = _ms(table)
            self.first_ms, self.last_ms = int(ms.min()), int(ms.max())
        self._frames: dict[str, list] = {}
        self._plain: pa.Table | None = None

    @property
    def key(self) -> Key:
        return self.product, self.exchange, self.symbol

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def plain(self) -> pa.Table:
        """The rows with dictionary columns decoded, as they go on the wire (done when first sent,
        not in publish(): checking 150 column types per publish costs more than the rest of it)."""
        if self._plain is None:
            self._plain = wire.plain_table(self.table)
        return self._plain

    def frames(self, fmt: str) -> list[wire.Frame]:
        """The chunk's rows on the wire; encoded once per format, shared by all subscribers."""
        out = self._frames.get(fmt)
        if out is None:
            encode = wire.arrow_batches if fmt == "arrow" else wire.json_rows
            out = self._frames[fmt] = encode(self.product, self.plain(), self.replay)
        return out


# A key's rows are merged into tables of at most FANOUT ** MAX_LEVEL chunks: the oldest table is
# dropped once the window has passed all of its chunks, so at most that many expired ones are held.
MAX_LEVEL = 1


class _Held:
    """A chunk in the ring: its place in publish order, and where its rows are in its key's rows."""

    __slots__ = ("seq", "replay", "first_ms", "last_ms", "start", "rows")

    def __init__(self, seq: int, replay: bool, first_ms: int, last_ms: int, start: int, rows: int):
        self.seq, self.replay, self.first_ms, self.last_ms, self.start, self.rows = \
            seq, replay, first_ms, last_ms, start, rows


class _Chunks:
    """A key's held chunks, oldest first, as flat columns of 8-byte integers: like a deque of `_Held`
    (append, popleft, [i], [0] = ..., iteration: `_Held` views made on access), 41 bytes a chunk
    where a `_Held` with its ints took ~224 (~18 MB for 20 symbols' 15 minutes, outside any bound).

    The arrays and the index of the oldest are one tuple, replaced as a whole when the oldest goes,
    so another thread (the metrics scrape: `RecentRows.span_ms`) reading [0] and [-1] sees a
    consistent state; the dropped front is cut off in new arrays once it is half of them."""

    __slots__ = ("_state",)
    BYTES = 5 * 8 + 1  # per chunk: seq, first_ms, last_ms, start, rows; replay

    def __init__(self):
        self._state = (tuple(array("q") for _ in range(5)), bytearray(), 0)

    def __len__(self) -> int:
        cols, _, lo = self._state
        return len(cols[0]) - lo

    def append(self, held: _Held) -> None:
        cols, replay, _ = self._state
        for col, value in zip(cols, self._values(held)):
            col.append(value)
        replay.append(held.replay)

    def popleft(self) -> _Held:
        cols, replay, lo = state = self._state
        if lo >= len(cols[0]):
            raise IndexError("pop from an empty ring key")
        held = self._held(state, lo)
        lo += 1
        if lo >= 1024 and 2 * lo >= len(cols[0]):
            cols, replay, lo = tuple(col[lo:] for col in cols), replay[lo:], 0
        self._state = (cols, replay, lo)
        return held

    def __getitem__(self, i: int) -> _Held:
        state = self._state
        cols, _, lo = state
        n = len(cols[0])
        at = lo + i if i >= 0 else n + i
        if not lo <= at < n:
            raise IndexError("ring key index out of range")
        return self._held(state, at)

    def __setitem__(self, i: int, held: _Held) -> None:
        if i != 0:
            raise IndexError("only the oldest chunk is replaced (trimmed)")
        cols, replay, lo = self._state
        if lo >= len(cols[0]):
            raise IndexError("ring key index out of range")
        for col, value in zip(cols, self._values(held)):
            col[lo] = value
        replay[lo] = held.replay

    def __iter__(self):
        state = self._state
        return (self._held(state, at) for at in range(state[2], len(state[0][0])))

    @staticmethod
    def _values(held: _Held) -> tuple[int, ...]:
        """`held`'s integers in the order of the columns (`_held` reads them back)."""
        return held.seq, held.first_ms, held.last_ms, held.start, held.rows

    @staticmethod
    def _held(state, at: int) -> _Held:
        (seq, first, last, start, rows), replay, _ = state
        return _Held(seq[at], bool(replay[at]), first[at], last[at], start[at], rows[at])


class _Stream:
    """One key's recent chunks and their rows: `tables` hold the rows numbered `base` on, in order."""

    __slots__ = ("chunks", "tables", "levels", "base", "end", "rows", "columns", "packed", "loose")

    def __init__(self, columns: int):
        self.chunks = _Chunks()
        self.tables: list = []  # as table_blocks.append holds them: loose (the newest) or Packed
        self.levels: list[int] = []
        self.base = self.end = self.rows = 0
        self.columns = columns
        self.packed = 0  # bytes of the Packed tables
        self.loose = 0  # rows of the others

    @property
    def bytes(self) -> int:
        """The memory of its rows: the Packed tables' buffers, 8 bytes a value of the tables as
        published (the newest, fewer than FANOUT per key: their objects -- COLUMN_BYTES a column --
        are what every key costs however old its rows, not what dropping old rows frees), and the
        chunks' places (`_Chunks.BYTES` each)."""
        return self.packed + 8 * self.columns * self.loose + _Chunks.BYTES * len(self.chunks)

    def add(self, chunk: Chunk) -> None:
        self.chunks.append(_Held(chunk.seq, chunk.replay, chunk.first_ms, chunk.last_ms, self.end, chunk.rows))
        n = len(self.tables)
        self.packed += table_blocks.append(self.tables, self.levels, chunk.table, MAX_LEVEL)
        if len(self.tables) == n + 1:
            self.loose += chunk.rows
        else:  # merged (one table in FANOUT appended)
            self.loose = sum(t.num_rows for t in self.tables if table_blocks.is_loose(t))
        self.end += chunk.rows
        self.rows += chunk.rows

    def table(self, held: _Held) -> pa.Table:
        """The rows of `held` (within one table: merges join whole chunks)."""
        offset = self.base
        for t in self.tables:
            if held.start < offset + t.num_rows:
                return table_blocks.table(t).slice(held.start - offset, held.rows)
            offset += t.num_rows
        raise AssertionError("a held chunk's rows are gone")

    def trim(self, held: _Held, cut: int) -> None:
        """Forget the first `cut` rows of the oldest chunk `held`."""
        table = self.table(held).slice(cut)
        ms = _ms(table)
        self.chunks[0] = _Held(held.seq, held.replay, int(ms.min()), int(ms.max()), held.start + cut, held.rows - cut)
        self.rows -= cut

    def drop_unheld(self) -> None:
        """Drop the tables whose rows all precede the oldest chunk's."""
        start = self.chunks[0].start if self.chunks else self.end
        while self.tables and self.base + self.tables[0].num_rows <= start:
            table = self.tables.pop(0)
            self.base += table.num_rows
            self.packed -= table_blocks.packed_bytes(table)
            self.loose -= table.num_rows if table_blocks.is_loose(table) else 0
            self.levels.pop(0)


class RecentRows:
    """Recent chunks per key, bounded by exchange-time minutes and rows per key, and by the
    estimated memory of all keys' tables (`max_mb`; None: no bound; `_Stream.bytes`)."""

    def __init__(self, minutes: float, max_rows: int, max_mb: float | None = None):
        self.window_ms = int(minutes * 60_000)
        self.max_rows = max_rows
        self.max_bytes = int(max_mb * 2 ** 20) if max_mb is not None else None
        self.bytes = 0  # estimated: the sum of the streams' `bytes`
        self.bounded = False  # the byte bound has dropped rows the other bounds kept
        self._streams: dict[Key, _Stream] = {}

    @property
    def enabled(self) -> bool:
        return self.window_ms > 0 and self.max_rows > 0

    def add(self, chunk: Chunk) -> None:
        if not self.enabled or not chunk.rows:
            return
        s = self._streams.get(chunk.key)
        if s is None:
            s = self._streams[chunk.key] = _Stream(chunk.table.num_columns)
        before = s.bytes
        s.add(chunk)
        held = s.chunks
        newest = max(held[0].last_ms, held[-1].last_ms)
        while held and (s.rows - held[0].rows >= self.max_rows or held[0].last_ms < newest - self.window_ms):
            s.rows -= held.popleft().rows
        if s.rows > self.max_rows:  # the oldest chunk straddles the row bound: keep its newest rows
            s.trim(held[0], s.rows - self.max_rows)
        s.drop_unheld()
        self.bytes += s.bytes - before
        if self.max_bytes is not None and self.bytes > self.max_bytes:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        """Drop the chunks whose newest rows are oldest, of any key, until the rows take 1/16 less
        than the bound (one heap of the keys per 1/16 of the bound added, not one per chunk)."""
        target = self.max_bytes - self.max_bytes // 16
        heap = [(s.chunks[0].last_ms, i, s) for i, s in enumerate(self._streams.values()) if s.chunks]
        heapq.heapify(heap)
        while self.bytes > target and heap:
            _, i, s = heapq.heappop(heap)
            before = s.bytes
            s.rows -= s.chunks.popleft().rows
            s.drop_unheld()  # (a block's memory goes with its last chunk)
            self.bytes += s.bytes - before
            if s.chunks:
                heapq.heappush(heap, (s.chunks[0].last_ms, i, s))
        if not self.bounded:
            self.bounded = True
            log.info("live_replay_bounded", replay_mb=self.max_bytes / 2 ** 20,
                     minutes_kept=round(self.span_ms() / 60_000, 1),
                     note="the replay ring holds fewer than etl.live.replay_minutes for all symbols and "
                          "products: raise etl.live.replay_mb (memory) or lower replay_minutes")

    def span_ms(self) -> int:
        """Exchange time from the oldest row held to the newest, over all keys (0: empty): each key's
        oldest chunk's first row and newest chunk's last (a key's chunks come in time order).  Safe
        to call from another thread (the metrics scrape) while the loop adds: it only reads each
        key's first and last chunk, and a key emptied meanwhile is skipped."""
        oldest = newest = None
        for s in list(self._streams.values()):
            try:
                first, last = s.chunks[0].first_ms, s.chunks[-1].last_ms
            except IndexError:
                continue
            oldest = first if oldest is None else min(oldest, first)
            newest = last if newest is None else max(newest, last)
        return 0 if oldest is None else max(newest - oldest, 0)

    def since(self, from_ms: int, keys: Iterable[Key]) -> list[Chunk]:
        """Replay chunks of these keys with rows at or after `from_ms`, in publish order."""
        out = []
        for key in keys:
            s = self._streams.get(key)
            for held in (s.chunks if s is not None else ()):
                if held.last_ms < from_ms:
                    continue
                table = s.table(held)
                if held.first_ms < from_ms:
                    table = table.filter(pa.array(_ms(table) >= from_ms))
                out.append(Chunk(held.seq, *key, table, True))
        out.sort(key=lambda c: c.seq)
        return out

    def keys(self) -> list[Key]:
        return list(self._streams)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self._streams.values())
