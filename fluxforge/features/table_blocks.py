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
Arrow IPC buffer: few objects matter as much as few bytes -- with thousands of tables of
Arrow objects alive, everything the live ETL computed got slower as the heap filled (a
chunk's feed took twice as long after 20 minutes of held tables; as IPC buffers, no
longer).  `table()` reads one back (zero-copy).  The rows, their order, types and values
stay exactly what was appended.  Tables that cannot be concatenated (different schemas)
are left as they are.

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

log = get_logger("fluxforge.etl.live")

FANOUT = 16
SPILL_LEVEL = 2  # blocks of FANOUT ** 2 appended tables are spilled (and not merged further)
_KEPT = 1 << 30  # the level of tables left unmerged: above any level a merge reaches


class Packed:
    """A merged table as one Arrow IPC stream buffer; `num_rows` without reading it."""

    __slots__ = ("buffer", "num_rows")

    def __init__(self, table: pa.Table):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        grown = sink.getvalue()  # in a buffer grown by doubling: up to twice its size allocated
        self.buffer, self.num_rows = pa.allocate_buffer(grown.size), table.num_rows
        pa.FixedSizeBufferWriter(self.buffer).write(grown)


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
        spilled = Spilled(self._file, self.size, len(data), packed.num_rows)
        self.size += len(data)
        return spilled


class Spilled:
    """A `Packed` block written to a `Spill`: where its bytes are, and `num_rows`."""

    __slots__ = ("file", "offset", "length", "num_rows")

    def __init__(self, file, offset: int, length: int, num_rows: int):
        self.file, self.offset, self.length, self.num_rows = file, offset, length, num_rows

    @property
    def buffer(self) -> pa.Buffer:
        data = os.pread(self.file.fileno(), self.length, self.offset)
        if len(data) != self.length:
            raise OSError(f"spill file: {len(data)} of {self.length} bytes at {self.offset}")
        return pa.py_buffer(data)


def table(held: pa.Table | Packed | Spilled) -> pa.Table:
    """What `append` holds, as a table."""
    return held if isinstance(held, pa.Table) else pa.ipc.open_stream(held.buffer).read_all()


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
        try:
            merged = Packed(pa.concat_tables([table(t) for t in tables[-FANOUT:]]).combine_chunks())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            levels[-FANOUT:] = [_KEPT] * FANOUT
            return added
        level = levels[-1] + 1
        added -= sum(packed_bytes(t) for t in tables[-FANOUT:])
        del tables[-FANOUT:], levels[-FANOUT:]
        if spill is not None and level == SPILL_LEVEL:
            merged = spill.put(merged)
        tables.append(merged)
        levels.append(level)
        added += packed_bytes(merged)
    return added


def packed_bytes(held: pa.Table | Packed | Spilled) -> int:
    """The bytes of a `Packed` block (in memory); 0 for the others."""
    return held.buffer.size if isinstance(held, Packed) else 0
