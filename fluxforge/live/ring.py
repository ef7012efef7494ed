"""The ring of recent published chunks per (product, exchange, symbol).

Why a ring: "the last N minutes, then live" is answered from memory, so a
strategy can warm up its indicators without reading Parquet.  It is bounded
in exchange-time minutes and in rows per key (`etl.live.replay_*`), and in memory
for all keys together (`etl.live.replay_mb`: the other two grow with the symbols and
products; beyond it the chunks with the oldest rows go first, whatever their key, so
every key keeps about the same minutes, logged once as `live_replay_bounded`).  The
ring keeps what it needs of each chunk (publish order, rows, times: 41 bytes, `_Chunks`,
counted in the memory bound) and the rows themselves as a few compacted tables per product
(features/table_blocks.py), each publish's rows once for all the keys published with them: a
table per published chunk took ~80 KB for a 170-column hf row, 2 GB for the default 15 minutes
of 20 symbols, and a table per key and publish cost the ETL more CPU than its engines' Python.
A replay cuts each chunk's rows back out of them, so a cached encoding never outlives the
fan-out.
"""
from __future__ import annotations

import heapq
from array import array
from typing import Callable, Iterable

import pyarrow as pa

from ..features import table_blocks
from ..logs import get_logger
from .chunk import Chunk, Key, Published, times_ms

log = get_logger("fluxforge.live")

# A product's rows are merged into tables of at most FANOUT ** MAX_LEVEL publishes: the oldest table
# is dropped once the window has passed all of its chunks, so at most that many expired ones are held.
MAX_LEVEL = 1


class _Held:
    """A chunk in the ring: its place in publish order, and where its rows are in its product's rows."""

    __slots__ = ("seq", "replay", "first_ms", "last_ms", "start", "rows")

    def __init__(self, seq: int, replay: bool, first_ms: int, last_ms: int, start: int, rows: int):
        self.seq, self.replay, self.first_ms, self.last_ms, self.start, self.rows = \
            seq, replay, first_ms, last_ms, start, rows


class _Chunks:
    """A key's held chunks, oldest first, as flat columns of 8-byte integers: like a deque of `_Held`
    (`add` appends, `drop_oldest` pops the oldest, [i], [0] = ..., iteration: `_Held` views made on
    access; `oldest` and `newest_last_ms` read the ring's bounds without making one), 41 bytes a chunk
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

    def add(self, seq: int, replay: bool, first_ms: int, last_ms: int, start: int, rows: int) -> None:
        """Append a chunk's place (every chunk published comes here: no `_Held` made to be taken apart)."""
        (c_seq, c_first, c_last, c_start, c_rows), c_replay, _ = self._state
        c_seq.append(seq)
        c_first.append(first_ms)
        c_last.append(last_ms)
        c_start.append(start)
        c_rows.append(rows)
        c_replay.append(replay)

    def drop_oldest(self) -> int:
        """Forget the oldest chunk; its rows."""
        cols, replay, lo = self._state
        if lo >= len(cols[0]):
            raise IndexError("pop from an empty ring key")
        rows = cols[4][lo]
        lo += 1
        if lo >= 1024 and 2 * lo >= len(cols[0]):
            cols, replay, lo = tuple(col[lo:] for col in cols), replay[lo:], 0
        self._state = (cols, replay, lo)
        return rows

    def oldest(self) -> tuple[int, int, int]:
        """(rows, last_ms, start) of the oldest chunk, read without making a `_Held`: the ring bounds
        every key it publishes to, at every publish (IndexError: none)."""
        (_, _, last, start, rows), _, lo = self._state
        return rows[lo], last[lo], start[lo]

    def newest_last_ms(self) -> int:
        """last_ms of the newest chunk (IndexError: none)."""
        cols, _, lo = self._state
        if lo >= len(cols[2]):
            raise IndexError("no chunks")
        return cols[2][-1]

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


class _Rows:
    """The rows published of one product (and schema), of every stream published with them, in
    publish order: each publish's table once, however many streams it holds (a chunk is a run of
    its rows), as `table_blocks.append` holds them; rows numbered from `base`."""

    __slots__ = ("tables", "levels", "base", "end", "columns", "packed", "loose", "streams")

    def __init__(self, columns: int):
        self.tables: list = []  # loose (the newest) or Packed
        self.levels: list[int] = []
        self.base = self.end = 0
        self.columns = columns
        self.packed = 0  # bytes of the Packed tables
        self.loose = 0  # rows of the others
        self.streams: list[_Stream] = []  # those whose chunks are rows of these

    @property
    def bytes(self) -> int:
        """The memory of the rows: the Packed tables' buffers and 8 bytes a value of the tables as
        published (the newest, fewer than FANOUT: their objects -- COLUMN_BYTES a column -- are
        what a product costs however old its rows, not what dropping old rows frees)."""
        return self.packed + 8 * self.columns * self.loose

    def add(self, table: pa.Table) -> int:
        """Append a publish's rows; the number of its first row."""
        start, n = self.end, len(self.tables)
        self.packed += table_blocks.append(self.tables, self.levels, table, MAX_LEVEL)
        if len(self.tables) == n + 1:
            self.loose += table.num_rows
        else:  # merged (one table in FANOUT appended)
            self.loose = sum(t.num_rows for t in self.tables if table_blocks.is_loose(t))
        self.end += table.num_rows
        return start

    def table(self, start: int, rows: int) -> pa.Table:
        """Rows `start` on (within one table: a publish's rows are, and merges join whole publishes)."""
        held, first = self.block(start)
        return table_blocks.table(held).slice(start - first, rows)

    def block(self, start: int) -> tuple[object, int]:
        """The held table (as `table_blocks.append` holds it) row `start` is in, and its first row's number."""
        offset = self.base
        for t in self.tables:
            if start < offset + t.num_rows:
                return t, offset
            offset += t.num_rows
        raise AssertionError("a held chunk's rows are gone")

    def drop_unheld(self) -> None:
        """Drop the tables whose rows all precede every stream's oldest chunk."""
        start = min((s.chunks.oldest()[2] for s in self.streams if s.chunks), default=self.end)
        while self.tables and self.base + self.tables[0].num_rows <= start:
            table = self.tables.pop(0)
            self.base += table.num_rows
            self.packed -= table_blocks.packed_bytes(table)
            self.loose -= table.num_rows if table_blocks.is_loose(table) else 0
            self.levels.pop(0)


class _Stream:
    """One key's recent chunks: places in its product's `_Rows`."""

    __slots__ = ("chunks", "rows", "store")

    def __init__(self, store: _Rows):
        self.chunks = _Chunks()
        self.rows = 0
        self.store = store

    @property
    def bytes(self) -> int:
        """The chunks' places (`_Chunks.BYTES` each); their rows are counted in `store`."""
        return _Chunks.BYTES * len(self.chunks)

    def add(self, chunk: Chunk, start: int) -> None:
        self.chunks.add(chunk.seq, chunk.replay, chunk.first_ms, chunk.last_ms, start, chunk.rows)
        self.rows += chunk.rows

    def table(self, held: _Held) -> pa.Table:
        """The rows of `held`."""
        return self.store.table(held.start, held.rows)

    def trim(self, held: _Held, cut: int) -> None:
        """Forget the first `cut` rows of the oldest chunk `held`."""
        table = self.table(held).slice(cut)
        ms = times_ms(table)
        self.chunks[0] = _Held(held.seq, held.replay, int(ms.min()), int(ms.max()), held.start + cut, held.rows - cut)
        self.rows -= cut


class RecentRows:
    """Recent chunks per key, bounded by exchange-time minutes and rows per key, and by the
    estimated memory of all keys' rows (`max_mb`; None: no bound; `_Rows.bytes`, `_Stream.bytes`)."""

    def __init__(self, minutes: float, max_rows: int, max_mb: float | None = None):
        self.window_ms = int(minutes * 60_000)
        self.max_rows = max_rows
        self.max_bytes = int(max_mb * 2 ** 20) if max_mb is not None else None
        self.bytes = 0  # estimated: the sum of the stores' and the streams' `bytes`
        self.bounded = False  # the byte bound has dropped rows the other bounds kept
        self._stores: dict[tuple[str, bytes], _Rows] = {}  # (product, schema) -> its rows
        self._schemas: dict[str, tuple[pa.Schema, bytes]] = {}  # product -> its last schema, serialized
        self._streams: dict[Key, list[_Stream]] = {}  # a key's (one per schema its rows had)

    @property
    def enabled(self) -> bool:
        return self.window_ms > 0 and self.max_rows > 0

    def add(self, chunk: Chunk) -> None:
        self.add_all([chunk], chunk.table)

    def add_all(self, chunks: list[Chunk], rows: pa.Table) -> None:
        """Chunks of one product published together, whose tables are `rows` one after another:
        the rows are held once for all of them."""
        if not self.enabled or not rows.num_rows:
            return
        store = self._store(chunks[0].product, rows)
        streams = [self._stream(c.key, store) if c.rows else None for c in chunks]
        touched = list(dict.fromkeys(s for s in streams if s is not None))
        before = store.bytes + sum(s.bytes for s in touched)
        start = store.add(rows)
        for chunk, s in zip(chunks, streams):
            if s is not None:
                s.add(chunk, start)
                self._bound(s)
            start += chunk.rows
        store.drop_unheld()
        self.bytes += store.bytes + sum(s.bytes for s in touched) - before
        if self.max_bytes is not None and self.bytes > self.max_bytes:
            self._drop_oldest()

    def _store(self, product: str, rows: pa.Table) -> _Rows:
        schema = rows.schema
        seen = self._schemas.get(product)  # (a 170-column schema: 30 us to serialize, 0.1 us to compare)
        if seen is None or not seen[0].equals(schema, check_metadata=True):
            seen = self._schemas[product] = (schema, schema.serialize().to_pybytes())
        key = (product, seen[1])  # rows of one schema merge (table_blocks)
        store = self._stores.get(key)
        if store is None:
            store = self._stores[key] = _Rows(rows.num_columns)
        return store

    def _stream(self, key: Key, store: _Rows) -> _Stream:
        streams = self._streams.setdefault(key, [])
        for s in streams:
            if s.store is store:
                return s
        s = _Stream(store)
        streams.append(s)
        store.streams.append(s)
        return s

    def _bound(self, s: _Stream) -> None:
        """Drop a stream's chunks beyond the window and the row bound."""
        held = s.chunks
        rows, last, _ = held.oldest()
        horizon = max(last, held.newest_last_ms()) - self.window_ms
        while s.rows - rows >= self.max_rows or last < horizon:
            s.rows -= held.drop_oldest()
            if not held:
                break
            rows, last, _ = held.oldest()
        if s.rows > self.max_rows:  # the oldest chunk straddles the row bound: keep its newest rows
            s.trim(held[0], s.rows - self.max_rows)

    def _drop_oldest(self) -> None:
        """Drop the chunks whose newest rows are oldest, of any key, until the rows take 1/16 less
        than the bound (one heap of the keys per 1/16 of the bound added, not one per chunk)."""
        target = self.max_bytes - self.max_bytes // 16
        streams = [s for ss in self._streams.values() for s in ss]
        heap = [(s.chunks.oldest()[1], i, s) for i, s in enumerate(streams) if s.chunks]
        heapq.heapify(heap)
        while self.bytes > target and heap:
            _, i, s = heapq.heappop(heap)
            before = s.bytes + s.store.bytes
            s.rows -= s.chunks.drop_oldest()
            s.store.drop_unheld()  # (a block's memory goes with the last chunk of any key in it)
            self.bytes += s.bytes + s.store.bytes - before
            if s.chunks:
                heapq.heappush(heap, (s.chunks.oldest()[1], i, s))
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
        for streams in list(self._streams.values()):
            for s in list(streams):
                try:
                    first, last = s.chunks[0].first_ms, s.chunks[-1].last_ms
                except IndexError:
                    continue
                oldest = first if oldest is None else min(oldest, first)
                newest = last if newest is None else max(newest, last)
        return 0 if oldest is None else max(newest - oldest, 0)

    def since(self, from_ms: int | None, keys: Iterable[Key], starts: Callable[[Key, int | None], int | None] | None = None
              ) -> list[Chunk]:
        """Replay chunks of these keys with rows at or after `from_ms` -- or, given `starts`, at or after
        `starts(key, from_ms)` (None: none of that key) -- in publish order.  A whole chunk is a run of
        its held block's rows, the block read once and `Published` for all of them: a subscriber
        replaying every stream sends each block's consecutive chunks as one encoding (chunk.spans),
        not one per stream and publish (minutes of 20 symbols: ~100k)."""
        out = []
        blocks: dict[int, Published] = {}  # id of a held block -> its rows, read once (alive meanwhile)
        for key in keys:
            start = from_ms if starts is None else starts(key, from_ms)
            if start is None:
                continue
            for s in self._streams.get(key, ()):
                for held in s.chunks:
                    if held.last_ms < start:
                        continue
                    if held.first_ms < start:
                        table = s.table(held)
                        out.append(Chunk(held.seq, *key, table.filter(pa.array(times_ms(table) >= start)), True))
                        continue
                    block, first = s.store.block(held.start)
                    pub = blocks.get(id(block))
                    if pub is None:
                        pub = blocks[id(block)] = Published(key[0], table_blocks.table(block), True)
                    cut = (held.start - first, held.rows, held.first_ms, held.last_ms)
                    out.append(Chunk(held.seq, *key, pub.table, True, cut, pub))
        out.sort(key=lambda c: c.seq)
        return out

    def keys(self) -> list[Key]:
        return list(self._streams)

    @property
    def rows(self) -> int:
        return sum(s.rows for streams in self._streams.values() for s in streams)
