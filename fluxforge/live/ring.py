"""Published rows as chunks, and the ring of recent ones per (product, exchange, symbol).

Why chunks: the ETL publishes a table per product and symbol; fanning that one
object out to every subscriber and encoding it at most once per wire format
keeps `publish()` O(subscribers) with no per-row work on the ETL's loop.

Why a ring: "the last N minutes, then live" is answered from memory, so a
strategy can warm up its indicators without reading Parquet.  It is bounded
twice, in exchange-time minutes and in rows per key (`etl.live.replay_*`).  The
ring holds bare copies of chunks, so a cached encoding never outlives the fan-out.
"""
from __future__ import annotations

from collections import deque
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


class Chunk:
    """Rows of one product and one (exchange, symbol), as published (seq: publish order)."""

    __slots__ = ("seq", "product", "exchange", "symbol", "table", "replay", "first_ms", "last_ms", "_frames",
                 "_plain")

    def __init__(self, seq: int, product: str, exchange: str, symbol: str, table: pa.Table, replay: bool,
                 first_ms: int | None = None, last_ms: int | None = None):
        self.seq, self.product, self.exchange, self.symbol = seq, product, exchange, symbol
        self.table, self.replay = table, replay
        if first_ms is None and table.num_rows:
            ms = _ms(table)
            first_ms, last_ms = int(ms.min()), int(ms.max())
        self.first_ms, self.last_ms = first_ms, last_ms
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

    def bare(self) -> "Chunk":
        return Chunk(self.seq, self.product, self.exchange, self.symbol, self.table, self.replay,
                     self.first_ms, self.last_ms)

    def replayed(self, from_ms: int) -> "Chunk | None":
        """This chunk's rows at or after `from_ms`, flagged as replay; None if none."""
        table = self.table
        if self.first_ms is None or self.last_ms < from_ms:
            return None
        if self.first_ms < from_ms:
            table = table.filter(pa.array(_ms(table) >= from_ms))
        return Chunk(self.seq, self.product, self.exchange, self.symbol, table, True)


class RecentRows:
    """Recent chunks per key, bounded by exchange-time minutes and rows per key."""

    def __init__(self, minutes: float, max_rows: int):
        self.window_ms = int(minutes * 60_000)
        self.max_rows = max_rows
        self._rings: dict[Key, deque[Chunk]] = {}
        self._rows: dict[Key, int] = {}

    @property
    def enabled(self) -> bool:
        return self.window_ms > 0 and self.max_rows > 0

    def add(self, chunk: Chunk) -> None:
        if not self.enabled or not chunk.rows:
            return
        ring = self._rings.setdefault(chunk.key, deque())
        ring.append(chunk.bare())
        rows = self._rows.get(chunk.key, 0) + chunk.rows
        newest = max(c.last_ms for c in (ring[0], ring[-1]))
        while ring and (rows - ring[0].rows >= self.max_rows or ring[0].last_ms < newest - self.window_ms):
            rows -= ring.popleft().rows
        if rows > self.max_rows:  # the oldest chunk straddles the row bound: keep its newest rows
            old = ring[0]
            cut = rows - self.max_rows
            ring[0] = Chunk(old.seq, old.product, old.exchange, old.symbol, old.table.slice(cut), old.replay)
            rows = self.max_rows
        self._rows[chunk.key] = rows

    def since(self, from_ms: int, keys: Iterable[Key]) -> list[Chunk]:
        """Replay chunks of these keys with rows at or after `from_ms`, in publish order."""
        out = [r for k in keys for c in self._rings.get(k, ()) if (r := c.replayed(from_ms)) is not None]
        out.sort(key=lambda c: c.seq)
        return out

    def keys(self) -> list[Key]:
        return list(self._rings)

    @property
    def rows(self) -> int:
        return sum(self._rows.values())
