"""Many small Arrow tables held as a few compacted blocks.

Why: the live path makes a table per symbol, product and collector flush, a row or two
each.  An Arrow table costs about half a kilobyte per column however few its rows (its
column, chunk and buffer objects), so a 170-column hf row held as a table of its own
takes ~80 KB for its 1.4 KB of values.  Held for a whole segment (the live feeder's
outputs, until the segment job writes them) and for `etl.live.replay_minutes` (the
replay ring), one table per flush grew the live ETL by ~4.5 MB/s at 20 symbols: past the
unit's MemoryMax (448 MB) within two minutes.

`append` merges every FANOUT tables of one level into one of the next (a counter in base
FANOUT): n appended tables are held as at most FANOUT - 1 per level, O(log n) in all, and
each row is copied about log_FANOUT(n) times.  A merged table is kept `Packed`, as one
Arrow IPC record batch message: few objects matter as much as few bytes -- with thousands
of tables of Arrow objects alive, everything the live ETL computed got slower as the heap
filled (a chunk's feed took twice as long after 20 minutes of held tables; as IPC buffers,
no longer).  The blocks of one schema share one schema object: an IPC stream per block
repeated it (a quarter of a 16-row hf block).  `table()` reads one back (zero-copy).  The
rows, their order, types and values stay exactly what was appended.  Tables that cannot be
concatenated (different schemas) are left as they are.

Tables not built yet (features/pending_tables.py: a builder and its row-aligned numpy inputs,
what the engines emit in the ETL) are merged by concatenating their inputs -- no Arrow work
at all, and a few arrays where a table has an array per column -- and built only when read
(`table()`) or when the block is packed for a spill.  The live path builds what it publishes
once per product and chunk for all symbols (etl/live_rows.py), so the segment's rows it holds
for the segment job never cost a table per symbol and flush.

With a `Spill`, blocks of SPILL_LEVEL go to a scratch file and only their place is held:
the live feeder holds a segment's outputs until the segment job writes them, ~2 MB a
minute at 20 symbols -- over an hour-long segment as much again as the whole ETL needs, so
what it holds in memory would grow with the segment's length and its symbols up to the
unit's MemoryMax.  With the spill it holds at most FANOUT ** SPILL_LEVEL - 1 tables' rows
per list (~4 minutes of 1 s flushes) whatever the segment's length.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow as pa

from ..logs import get_logger
from . import pending_tables
from .pending_tables import PendingTable

log = get_logger("fluxforge.etl.live")

FANOUT = 16
SPILL_LEVEL = 2  # blocks of FANOUT ** 2 appended tables are spilled (and not merged further)
_KEPT = 1 << 30  # the level of tables left unmerged: above any level a merge reaches


class Packed:
    """A merged table as one Arrow IPC record batch message (`buffer`), its schema shared with the
    other blocks of that schema (`schema`); `num_rows` without reading it.  Not an IPC stream,
    which repeats the schema in every block: 9 kB of a 16-row hf block's 37 kB.  (A table with
    dictionary columns, which a batch message cannot carry, is kept as a stream: `schema` None.)"""

    __slots__ = ("buffer", "num_rows", "schema")

    def __init__(self, rows: pa.Table | pa.RecordBatch):
        self.num_rows = rows.num_rows
        self.schema = shared_schema(rows.schema)
        if self.schema is None:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, rows.schema) as writer:
                writer.write(rows)
            self.buffer = _exact(sink.getvalue())
        else:
            self.buffer = _exact((rows if isinstance(rows, pa.RecordBatch) else _one_batch(rows)).serialize())

    def read(self) -> pa.Table:
        return _read(self.buffer, self.schema)

    def batch(self) -> pa.RecordBatch | None:
        """The rows as one batch (zero-copy); None for a stream."""
        return None if self.schema is None else pa.ipc.read_record_batch(self.buffer, self.schema)


def _concat(held: list) -> pa.Table | pa.RecordBatch:
    """The rows of `held` (tables as appended, or Packed) as one: Packed blocks' batches concatenated
    (no table of each first); else tables, combined.  ArrowInvalid when their schemas differ."""
    batches = [t.batch() if isinstance(t, Packed) else None for t in held]
    if all(b is not None for b in batches):
        return pa.concat_batches(batches)
    return pa.concat_tables([table(t) for t in held]).combine_chunks()


def _exact(grown: pa.Buffer) -> pa.Buffer:
    """`grown` in a buffer of its size (a stream's is grown by doubling: up to twice allocated)."""
    buffer = pa.allocate_buffer(grown.size)
    pa.FixedSizeBufferWriter(buffer).write(grown)
    return buffer


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches()
    if len(batches) == 1:
        return batches[0]
    if not batches:
        return pa.record_batch([pa.array([], f.type) for f in table.schema], schema=table.schema)
    raise pa.ArrowInvalid("a table whose columns do not combine into one chunk")  # (append keeps them)


def _read(buffer: pa.Buffer, schema: pa.Schema | None) -> pa.Table:
    """A block's rows, zero-copy from `buffer`."""
    if schema is None:
        return pa.ipc.open_stream(buffer).read_all()
    return pa.Table.from_batches([pa.ipc.read_record_batch(buffer, schema)], schema)


_SCHEMAS: dict[bytes, pa.Schema | None] = {}  # every schema a block was made of, by its serialized form


def shared_schema(schema: pa.Schema) -> pa.Schema | None:
    """One schema object per distinct schema, which every block of it references (a 160-field schema
    is tens of kB; there are a few per product and option set); None for one with dictionary columns."""
    key = schema.serialize().to_pybytes()
    if key not in _SCHEMAS:
        _SCHEMAS[key] = None if any(pa.types.is_dictionary(f.type) for f in schema) else schema
    return _SCHEMAS[key]


class Spill:
    """A scratch file for blocks: unnamed (O_TMPFILE in `directory`, on the data disk, not a
    tmpfs in RAM), so its space is freed when the last block held in it is gone or the process
    dies -- nothing to clean up after a crash (the live path rebuilds a segment's outputs from
    its chunk log).  A write that fails (a full disk) keeps that block in memory, logged as
    `live_spill_failed`; later blocks try again (`live_spill_resumed`)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.size = 0  # bytes written
        self.failed: OSError | None = None
        self._file = None

    def put(self, packed: Packed) -> Packed | Spilled:
        """`packed` written to the file, as a `Spilled`; `packed` itself if the write failed."""
        data = memoryview(packed.buffer)
        try:
            if self._file is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._file = tempfile.TemporaryFile(dir=self.directory, buffering=0)
            done = 0
            while done < len(data):
                done += os.pwrite(self._file.fileno(), data[done:], self.size + done)
        except OSError as e:
            if self.failed is None:
                log.warning("live_spill_failed", directory=str(self.directory), error=e.strerror or str(e),
                            note="the live path holds the active segment's rows in memory until it can write")
            self.failed = e
            return packed
        if self.failed is not None:
            log.info("live_spill_resumed", directory=str(self.directory))
            self.failed = None
        spilled = Spilled(self._file, self.size, len(data), packed)
        self.size += len(data)
        return spilled


class Spilled:
    """A `Packed` block written to a `Spill`: where its bytes are, its schema and `num_rows`."""

    __slots__ = ("file", "offset", "length", "num_rows", "schema")

    def __init__(self, file, offset: int, length: int, packed: Packed):
        self.file, self.offset, self.length = file, offset, length
        self.num_rows, self.schema = packed.num_rows, packed.schema

    @property
    def buffer(self) -> pa.Buffer:
        data = os.pread(self.file.fileno(), self.length, self.offset)
        if len(data) != self.length:
            raise OSError(f"spill file: {len(data)} of {self.length} bytes at {self.offset}")
        return pa.py_buffer(data)

    def read(self) -> pa.Table:
        return _read(self.buffer, self.schema)


def table(held: pa.Table | PendingTable | Packed | Spilled) -> pa.Table:
    """What `append` holds, as a table."""
    if isinstance(held, pa.Table):
        return held
    return pending_tables.build(held) if isinstance(held, PendingTable) else held.read()


def tables(held: list) -> list[pa.Table]:
    """A list `append` holds, as tables: each run of unbuilt tables of one builder built as one."""
    out: list[pa.Table] = []
    run: list[PendingTable] = []
    for t in [*held, None]:
        if run and not (isinstance(t, PendingTable) and t.key == run[0].key):
            out.append(pending_tables.build(pending_tables.merge(run)))
            run = []
        if isinstance(t, PendingTable):
            run.append(t)
        elif t is not None:
            out.append(table(t))
    return out


def is_loose(held) -> bool:
    """Whether `append` holds it as it was appended (not merged into a block yet)."""
    return isinstance(held, pa.Table)


def append(tables: list, levels: list[int], new: pa.Table, max_level: int | None = None,
           spill: Spill | None = None) -> int:
    """Append `new` to `tables` (whose merge levels `levels` tracks, one per table, in step)
    and merge; `max_level`: tables of that level are not merged further (blocks stay small
    enough to be dropped whole from the front, as the replay ring does); `spill`: blocks of
    SPILL_LEVEL are written to it (and not merged further).  Returns how many bytes of `Packed`
    blocks in memory it added (merged blocks in, the blocks merged into them out)."""
    added = 0
    if spill is not None:
        max_level = SPILL_LEVEL if max_level is None else min(max_level, SPILL_LEVEL)
    tables.append(new)
    levels.append(0)
    # levels never increase towards the end: when the FANOUT-th last is the last one's, so are all between
    while len(levels) >= FANOUT and levels[-FANOUT] == levels[-1] != max_level:
        level = levels[-1] + 1
        group = tables[-FANOUT:]
        spilled = spill is not None and level == SPILL_LEVEL
        try:
            if pending_tables.mergeable(group):  # unbuilt rows: merged unbuilt, built once when spilled
                merged = pending_tables.merge(group)
                merged = Packed(pending_tables.build(merged)) if spilled else merged
            else:
                merged = Packed(_concat(group))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            levels[-FANOUT:] = [_KEPT] * FANOUT
            return added
        added -= sum(packed_bytes(t) for t in tables[-FANOUT:])
        del tables[-FANOUT:], levels[-FANOUT:]
        if spilled:
            merged = spill.put(merged)
        tables.append(merged)
        levels.append(level)
        added += packed_bytes(merged)
    return added


def packed_bytes(held: pa.Table | PendingTable | Packed | Spilled) -> int:
    """The bytes of a `Packed` block (in memory); 0 for the others."""
    return held.buffer.size if isinstance(held, Packed) else 0


def held_bytes(held: pa.Table | PendingTable | Packed | Spilled) -> int:
    """The bytes of values `append` holds in memory for it (a spilled block's are on disk)."""
    if isinstance(held, PendingTable):
        return sum(x.nbytes for x in held.inputs)
    return held.nbytes if isinstance(held, pa.Table) else packed_bytes(held)
