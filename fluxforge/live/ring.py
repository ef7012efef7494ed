"""Published rows as chunks, and the ring of recent ones per (product, exchange, symbol).

Why chunks: the ETL publishes a table per product and symbol; fanning that one
object out to every subscriber and encoding it at most once per wire format
keeps `publish()` O(subscribers) with no per-row work on the ETL's loop.

Why a ring: "the last N minutes, then live" is answered from memory, so a
strategy can warm up its indicators without reading Parquet.  It is bounded
twice, in exchange-time minutes and in rows per key (`etl.live.replay_*`).  The
ring keeps what it needs of each chunk (publish order, rows, times) and the rows
themselves as a few compacted tables per key (features/table_blocks.py): a table
per published chunk took ~80 KB for a 170-column hf row, 2 GB for the default 15
minutes of 20 symbols.  A replay cuts each chunk's rows back out of them, so a
cached encoding never outlives the fan-out.
"""
from __future__ import annotations

from collections import deque
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..features import table_blocks
from . import wire

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


class _Stream:
    """One key's recent chunks and their rows: `tables` hold the rows numbered `base` on, in order."""

    __slots__ = ("chunks", "tables", "levels", "base", "end", "rows")

    def __init__(self):
        self.chunks: deque[_Held] = deque()
        self.tables: list = []  # pa.Table | table_blocks.Packed
        self.levels: list[int] = []
        self.base = self.end = self.rows = 0

    def add(self, chunk: Chunk) -> None:
        self.chunks.append(_Held(chunk.seq, chunk.replay, chunk.first_ms, chunk.last_ms, self.end, chunk.rows))
        table_blocks.append(self.tables, self.levels, chunk.table, MAX_LEVEL)
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
            self.base += self.tables.pop(0).num_rows
            self.levels.pop(0)


class RecentRows:
    """Recent chunks per key, bounded by exchange-time minutes and rows per key."""

    def __init__(self, minutes: float, max_rows: int):
        self.window_ms = int(minutes * 60_000)
        self.max_rows = max_rows
        self._streams: dict[Key, _Stream] = {}

    @property
    def enabled(self) -> bool:
        return self.window_ms > 0 and self.max_rows > 0

    def add(self, chunk: Chunk) -> None:
        if not self.enabled or not chunk.rows:
            return
        s = self._streams.get(chunk.key)
        if s is None:
            s = self._streams[chunk.key] = _Stream()
        s.add(chunk)
        held = s.chunks
        newest = max(held[0].last_ms, held[-1].last_ms)
        while held and (s.rows - held[0].rows >= self.max_rows or held[0].last_ms < newest - self.window_ms):
            s.rows -= held.popleft().rows
        if s.rows > self.max_rows:  # the oldest chunk straddles the row bound: keep its newest rows
            s.trim(held[0], s.rows - self.max_rows)
        s.drop_unheld()

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
