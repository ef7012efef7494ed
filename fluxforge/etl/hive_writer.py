"""Durable feature parts in the Hive tree: ZSTD Parquet, statistics, sorted by time.

Dictionary encoding is off: features are floats with few repeats, and it tripled
the write time for a larger file.

Why batch durability: a segment yields one part per (table, symbol, date); each
is written to a hidden temp name, all temps are fsync'd, renamed over their
final names, and every touched directory (including newly created partition
directories' parents) is fsync'd once.  Only then may the checkpoint move on.

Why all or nothing: a commit that fails half-way (a rename refused, an I/O error)
removes the parts it already renamed, so a failed segment leaves no file behind
for sync to upload or readers to mix with the redo.  Two outputs of one segment
aimed at the same file are refused before anything is written.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..fsio import fsync_dir, fsync_file, syncfs, tmp_name
from .naming import MS_PER_DAY, part_name

PARTITION_COLUMNS = ("exchange", "symbol", "interval", "date")
# Parts up to this size (Arrow bytes) are encoded in memory and written with one call: most parts of
# a segment are small (a symbol's bars or trade bars), and the file stream would issue a write(2) per
# page header, page and footer piece.  Larger parts (hf of a busy segment) stream to the file.
BUFFERED_PART_BYTES = 8 << 20


def prepare_table(tables: list[pa.Table]) -> pa.Table:
    """Concatenate engine outputs, drop partition columns, sort by timestamp if needed."""
    table = without_partition_columns(pa.concat_tables(tables) if len(tables) > 1 else tables[0])
    if not time_sorted(table):
        table = table.take(pc.sort_indices(table, sort_keys=[("timestamp", "ascending")]))
    return table


def without_partition_columns(table: pa.Table) -> pa.Table:
    schema = table.schema  # get_field_index: no Python set of a 160-column schema per call (live path)
    drop = [c for c in PARTITION_COLUMNS if schema.get_field_index(c) >= 0]
    return table.drop_columns(drop) if drop else table


def time_sorted(table: pa.Table, sizes: list[int] | None = None) -> bool:
    """Whether the rows are in timestamp order (each run of `sizes` rows on its own: the rows of
    several symbols one after the other)."""
    ts = _ms(table)
    if sizes is None:
        return not (len(ts) > 1 and (np.diff(ts) < 0).any())
    ends = np.cumsum(sizes)
    down = np.flatnonzero(np.diff(ts) < 0) + 1  # rows earlier than the one before them
    return bool(np.isin(down, ends).all())


def _ms(table: pa.Table) -> np.ndarray:
    col = table.column("timestamp")
    if pa.types.is_timestamp(col.type) and col.null_count == 0:
        return col.to_numpy().view(np.int64)  # datetime64 -> its int64 ticks, no compute call
    return pc.cast(col, pa.int64()).to_numpy() if not pa.types.is_integer(col.type) else col.to_numpy()


def _scalar_ms(value: pa.Scalar) -> int:
    """One timestamp (or integer ms) of the column `_ms` reads, as an int, without casting the column."""
    return int(value.value if isinstance(value, pa.TimestampScalar) else value.as_py())


def split_by_day(table: pa.Table) -> list[tuple[int, pa.Table]]:
    """(UTC day number, rows of that day) for a time-sorted table: a segment spanning midnight splits."""
    if table.num_rows:  # sorted: first and last row on one day (nearly every part) -> all of it
        col = table.column("timestamp")
        first, last = (_scalar_ms(col[i]) // MS_PER_DAY for i in (0, table.num_rows - 1))
        if first == last:
            return [(first, table)]
    days = _ms(table) // MS_PER_DAY
    if not len(days):
        return []
    bounds = np.flatnonzero(np.diff(days)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(days)]))
    return [(int(days[s]), table.slice(s, e - s)) for s, e in zip(starts, ends)]


class PartWriter:
    """Collects the parts of one segment, then `commit()` makes them all durable."""

    def __init__(self, segment: str, row_group_rows: int):
        self.segment = segment
        self.row_group_rows = row_group_rows
        self._pending: dict[Path, Path] = {}  # final -> temp, in the order added
        self._new_dirs: set[Path] = set()

    def add(self, partition_dir: Path, table: pa.Table) -> Path:
        self._mkdirs(partition_dir)
        final = partition_dir / part_name(self.segment)
        if final in self._pending:
            raise ValueError(f"two outputs of {self.segment} map to the same part {final}")
        tmp = tmp_name(final)
        if table.num_columns and table.column(0).num_chunks > 1:
            # a segment fed in live chunks has a chunk per flush: the writer would compress a page
            # per chunk (about twice the CPU for a 30 s segment); one copy into single chunks is cheaper
            table = table.combine_chunks()
        small = table.get_total_buffer_size() <= BUFFERED_PART_BYTES  # (nbytes of a slice costs ~1 ms)
        sink = pa.BufferOutputStream() if small else tmp
        pq.write_table(table, sink, compression="zstd", write_statistics=True,
                       row_group_size=self.row_group_rows, use_dictionary=False,
                       sorting_columns=[pq.SortingColumn(table.schema.get_field_index("timestamp"))])
        if small:  # the same bytes, in one write(2) instead of one per page and footer piece
            with open(tmp, "wb") as f:
                f.write(sink.getvalue())
        self._pending[final] = tmp
        return final

    def _mkdirs(self, path: Path) -> None:
        missing = []
        p = path
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            d.mkdir(exist_ok=True)
            self._new_dirs.add(d.parent)

    def commit(self) -> list[Path]:
        """temps durable -> rename all -> renames and new directories durable.

        With syncfs(2) each barrier is one call per file system instead of one
        fsync per file and directory (a segment writes ~50 parts)."""
        dirs = set(self._new_dirs) | {final.parent for final in self._pending}
        if not self._syncfs(dirs):
            for tmp in self._pending.values():
                fsync_file(tmp)
        renamed: list[Path] = []
        try:
            for final, tmp in self._pending.items():
                os.replace(tmp, final)
                renamed.append(final)
            if not self._syncfs(dirs):
                for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
                    fsync_dir(d)
        except BaseException:
            for final in renamed:
                final.unlink(missing_ok=True)
            raise
        done = list(self._pending)
        self._pending.clear()
        self._new_dirs.clear()
        return done

    @staticmethod
    def _syncfs(dirs: set[Path]) -> bool:
        """syncfs once per file system among `dirs`; False if unavailable (then fsync each)."""
        seen: set[int] = set()
        for d in dirs:
            dev = d.stat().st_dev
            if dev not in seen:
                seen.add(dev)
                if not syncfs(d):
                    return False
        return True

    def abort(self) -> None:
        for tmp in self._pending.values():
            tmp.unlink(missing_ok=True)
        self._pending.clear()


def remove_stale_temps(root: Path) -> int:
    """Delete hidden temp parts left by a crashed writer (readers ignore them anyway)."""
    removed = 0
    if not root.is_dir():
        return 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.startswith(".part-") and ".tmp-" in f:
                os.unlink(os.path.join(dirpath, f))
                removed += 1
    return removed
