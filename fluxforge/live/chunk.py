"""Published rows as chunks: the rows of one product and one (exchange, symbol).

Why chunks: the ETL publishes a table per product (its rows of all symbols); one chunk per
stream, fanned out to every subscriber of it and encoded at most once per wire format, keeps
`publish()` O(subscribers) with no per-row work on the ETL's loop.

Why the chunks of one publish share a `Published`: encoding has a cost per call whatever its
rows (a 164-column hf table: ~0.25 ms to JSON rows, ~0.1 ms to an Arrow batch, before its
rows'), and a publish holds a row or two of each of 20 symbols.  A subscriber's queued chunks
that are consecutive runs of one publish go out as one span (`Published.frames`): one encoding
for them all, shared by every subscriber that takes the same span (all symbols, usually).
"""
from __future__ import annotations

import weakref

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import wire

Key = tuple[str, str, str]  # (product, exchange, symbol)


def times_ms(table: pa.Table) -> np.ndarray:
    """The timestamp column as int64 ms (a view of a timestamp[ms] column: no compute call per publish)."""
    col = table.column("timestamp")
    if col.type == _TS_MS and col.null_count == 0:
        return col.to_numpy().view(np.int64)
    return pc.fill_null(pc.cast(col, pa.int64()), _NULL_MS).to_numpy()  # a null time: older than any


_TS_MS = pa.timestamp("ms", tz="UTC")
_NULL_MS = -(2 ** 63)
COLUMN_BYTES = 512  # an Arrow table's objects per column, however few its rows (features/table_blocks.py)


class Frames(list):
    """A span's wire frames (`Published.frames`), which the publish holds only while a subscriber does."""

    __slots__ = ("__weakref__",)


class Published:
    """The table of one publish, shared by its chunks (`Chunk.runs`): its rows with dictionary
    columns decoded, and the wire frames of each span of them asked for, made once.

    The frames are held weakly: a subscriber keeps the ones it sends until it sends again
    (`Subscriber.run`), so every subscriber sending the same span in that time shares them,
    and a slow subscriber's queued chunks do not keep the other spans' encodings alive (a
    queue's memory bound counts its chunks' rows, `Chunk.bytes`)."""

    __slots__ = ("product", "table", "replay", "_plain", "_frames")

    def __init__(self, product: str, table: pa.Table, replay: bool):
        self.product, self.table, self.replay = product, table, replay
        self._plain: pa.Table | None = None
        self._frames: weakref.WeakValueDictionary[tuple[str, int, int], Frames] = weakref.WeakValueDictionary()

    def plain(self) -> pa.Table:
        if self._plain is None:
            self._plain = wire.plain_table(self.table)
        return self._plain

    def frames(self, fmt: str, offset: int, rows: int) -> Frames:
        """Rows [offset, offset + rows) on the wire, encoded once per format and span while held."""
        key = (fmt, offset, rows)
        out = self._frames.get(key)
        if out is None:
            encode = wire.arrow_batches if fmt == "arrow" else wire.json_rows
            plain = self.plain()
            rows_of = plain if offset == 0 and rows == plain.num_rows else plain.slice(offset, rows)
            out = self._frames[key] = Frames(encode(self.product, rows_of, self.replay))
        return out


class Chunk:
    """Rows of one product and one (exchange, symbol), as published (seq: publish order);
    `published`/`offset`: the publish's table it is rows `offset` on of (without `published`:
    its own table, a publish of its own)."""

    __slots__ = ("seq", "product", "exchange", "symbol", "replay", "rows", "first_ms", "last_ms", "bytes",
                 "published", "offset", "_table", "_cut", "_plain")

    def __init__(self, seq: int, product: str, exchange: str, symbol: str, table: pa.Table, replay: bool,
                 _cut: tuple[int, int, int, int] | None = None, published: Published | None = None):
        self.seq, self.product, self.exchange, self.symbol = seq, product, exchange, symbol
        self.replay = replay
        self.first_ms = self.last_ms = None
        self.offset = 0
        if _cut is not None:  # (offset, rows, first_ms, last_ms): a run of `table` (`runs`)
            self.offset, self.rows, self.first_ms, self.last_ms = _cut
            self._cut = self.offset, self.rows
        else:
            self.rows, self._cut = table.num_rows, None
            if self.rows:
                ms = times_ms(table)
                self.first_ms, self.last_ms = int(ms.min()), int(ms.max())
        self._table = table
        self.published = published if published is not None else Published(product, table, replay)
        # the memory it holds, estimated without a compute call: ~80 kB for one 170-column hf row
        self.bytes = table.num_columns * (COLUMN_BYTES + 8 * self.rows)
        self._plain: pa.Table | None = None

    @classmethod
    def runs(cls, seq: int, product: str, table: pa.Table, runs: list[tuple[str, str, int, int]],
             replay: bool) -> list[Chunk]:
        """A chunk per run (exchange, symbol, offset, rows) of `table`, numbered from `seq` on: a
        publish of many streams' rows, each stream's cut out of it only when first read (by a
        subscriber or a replay), not for every stream at every publish."""
        if not runs:
            return []
        ms = times_ms(table)
        starts = np.array([offset for _, _, offset, _ in runs], dtype=np.int64)
        sizes = np.array([n for *_, n in runs], dtype=np.int64)
        ends = starts + sizes
        if (sizes <= 0).any() or starts[0] != 0 or (starts[1:] != ends[:-1]).any() or ends[-1] != len(ms):
            raise ValueError("runs must cut the table into consecutive non-empty parts, in order")
        first, last = np.minimum.reduceat(ms, starts).tolist(), np.maximum.reduceat(ms, starts).tolist()  # per run
        published = Published(product, table, replay)
        return [cls(seq + i, product, e, s, table, replay, (offset, n, first[i], last[i]), published)
                for i, (e, s, offset, n) in enumerate(runs)]

    @property
    def table(self) -> pa.Table:
        if self._cut is not None:  # (on the loop thread, as every reader of chunks)
            self._table, self._cut = self._table.slice(*self._cut), None
        return self._table

    @property
    def key(self) -> Key:
        return self.product, self.exchange, self.symbol

    def plain(self) -> pa.Table:
        """The rows with dictionary columns decoded, as they go on the wire (done when first sent,
        not in publish(): checking 150 column types per publish costs more than the rest of it)."""
        if self._plain is None:
            self._plain = self.published.plain().slice(self.offset, self.rows)
        return self._plain

    def frames(self, fmt: str) -> Frames:
        """The chunk's rows on the wire (`Published.frames`: shared while a subscriber holds them)."""
        return self.published.frames(fmt, self.offset, self.rows)


def spans(items: list) -> list:
    """`items` (chunks and other queue items) with each run of chunks that are consecutive rows of
    one publish merged into a (Published, offset, rows) span, in order; other items as they are."""
    out: list = []
    for item in items:
        if not isinstance(item, Chunk):
            out.append(item)
            continue
        last = out[-1] if out else None
        if isinstance(last, tuple) and last[0] is item.published and last[1] + last[2] == item.offset:
            out[-1] = (item.published, last[1], last[2] + item.rows)
        else:
            out.append((item.published, item.offset, item.rows))
    return out
