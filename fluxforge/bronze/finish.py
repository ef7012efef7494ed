"""Finish a segment: journals -> ZSTD Parquet + manifest.json -> one rename into ready/.

Why one function for rotation and recovery: a segment finished after a crash
must be indistinguishable from one finished normally, except for the manifest's
`recovered` flag and `torn_batches_dropped`.  The steps are ordered so that a
crash at any point is redone safely by `finish_segment` on the next start:

1. each channel's complete journal batches are streamed into `<channel>.parquet`
   (written under a hidden temp name, fsync'd, renamed); an optional channel
   (`schemas.OPTIONAL_CHANNELS`) without a journal was not recorded and gets no file;
2. `manifest.json` is written atomically -- its presence means "Parquet done";
3. the journals are deleted and the directory fsync'd;
4. the directory is renamed into ready/ (both parents fsync'd).

Other branches (ETL tests, the demo) build segments with `build_segment`.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from .active_segment import ActiveSegment
from .schemas import (CHANNEL_SCHEMAS, FORMAT_VERSION, OPTIONAL_CHANNELS, channel_file, parquet_options,
                      segment_channels)
from ..fsio import atomic_path, atomic_write_json, fsync_dir, sha256_file
from .journal import JournalScan, iter_journal
from .segments import MANIFEST, SegmentId, SegmentStore

PARQUET_ROW_GROUP_ROWS = 65536




class _ChannelStats:
    """min/max of `timestamp` and `recv_ns`, accumulated batch by batch."""

    def __init__(self) -> None:
        self.ranges: dict[str, list] = {"timestamp": [None, None], "recv_ns": [None, None]}

    def add(self, batch: pa.RecordBatch) -> None:
        for column, bounds in self.ranges.items():
            mn, mx = int64_min_max(batch.column(column))
            if mn is not None:
                bounds[0] = mn if bounds[0] is None else min(bounds[0], mn)
                bounds[1] = mx if bounds[1] is None else max(bounds[1], mx)


def int64_min_max(arr: pa.Array) -> tuple[int | None, int | None]:
    """(min, max) of an int64 array's valid values, (None, None) if it has none.

    Read from the values buffer, not with `pyarrow.compute.min_max` (libarrow_compute, ~13 MB of
    RSS) or numpy (~16 MB): the collector, which finishes segments, imports neither."""
    if arr.null_count == len(arr):
        return None, None
    if arr.null_count:
        values = [v for v in arr.to_pylist() if v is not None]
    else:
        values = memoryview(arr.buffers()[1]).cast("q")[arr.offset:arr.offset + len(arr)]
    return min(values), max(values)


def _write_parquet(path: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch], stats: _ChannelStats) -> None:
    """Stream batches into one ZSTD Parquet file in row groups of PARQUET_ROW_GROUP_ROWS."""
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema, **parquet_options(schema)) as writer:
            pending: list[pa.RecordBatch] = []
            pending_rows = 0
            wrote = False
            for b in batches:
                stats.add(b)
                pending.append(b)
                pending_rows += b.num_rows
                if pending_rows >= PARQUET_ROW_GROUP_ROWS:
                    writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=PARQUET_ROW_GROUP_ROWS)
                    pending, pending_rows, wrote = [], 0, True
            if pending or not wrote:
                writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=PARQUET_ROW_GROUP_ROWS)


def _channel_entry(path: Path, scan: JournalScan, stats: _ChannelStats) -> dict:
    return {
        "file": path.name,
        "rows": scan.rows,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "min_ts": stats.ranges["timestamp"][0],
        "max_ts": stats.ranges["timestamp"][1],
        "min_recv_ns": stats.ranges["recv_ns"][0],
        "max_recv_ns": stats.ranges["recv_ns"][1],
        "torn_batches_dropped": scan.torn_batches,
        "torn_bytes_dropped": scan.torn_bytes,
    }


def read_manifest(seg_dir: Path) -> dict:
    return json.loads((seg_dir / MANIFEST).read_text())


def file_mismatch(path: Path, entry: dict) -> str | None:
    """Why a finished segment's file is not the one its manifest entry recorded (size, then sha256),
    or None: what the ETL checks before it reads a segment and sync before it ships one."""
    size = path.stat().st_size
    if "bytes" in entry and int(entry["bytes"]) != size:
        return f"size {size} bytes but {MANIFEST} says {entry['bytes']} (truncated or replaced)"
    if entry.get("sha256"):
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            return f"sha256 {digest[:16]}... does not match {MANIFEST} ({str(entry['sha256'])[:16]}...)"
    return None


def finish_segment(seg_dir: str | Path, store: SegmentStore, *, recovered: bool = False) -> Path:
    """Turn an active segment directory into a finished one in ready/; returns its new path."""
    return finish_segment_with_manifest(seg_dir, store, recovered=recovered)[0]


def finish_segment_with_manifest(seg_dir: str | Path, store: SegmentStore, *,
                                 recovered: bool = False) -> tuple[Path, dict]:
    """`finish_segment`, also returning the manifest as read BEFORE the rename: once the
    segment is in ready/ the ETL may move it on at any moment, so reading it there races.

    Raises `fluxforge.bronze.journal.JournalUnreadable` when a journal's header is
    damaged (the caller moves the segment to failed/).  Safe to call again on
    a directory whose previous finishing was interrupted.
    """
    seg_dir = Path(seg_dir)
    seg_id = SegmentId.parse(seg_dir.name)
    for leftover in seg_dir.glob(".*"):
        leftover.unlink()  # temp files of an interrupted finish
    if not (seg_dir / MANIFEST).exists():
        channels = {}
        for channel, schema in CHANNEL_SCHEMAS.items():
            journal = seg_dir / channel_file(channel, finished=False)
            if channel in OPTIONAL_CHANNELS and not journal.exists():
                continue  # not recorded: no file (the core channels get one, empty if need be)
            scan, stats = JournalScan(), _ChannelStats()
            batches = iter_journal(journal, schema, scan) if journal.exists() else iter(())
            parquet = seg_dir / channel_file(channel, finished=True)
            _write_parquet(parquet, schema, batches, stats)
            channels[channel] = _channel_entry(parquet, scan, stats)
        manifest = {
            "segment": seg_id.name,
            "host": seg_id.host,
            "seq": seg_id.seq,
            "format_version": FORMAT_VERSION,
            "started": seg_id.start_datetime.isoformat(),
            "closed": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "channels": channels,
            "rows": sum(c["rows"] for c in channels.values()),
            "recovered": recovered,
            "torn_batches_dropped": sum(c["torn_batches_dropped"] for c in channels.values()),
        }
        atomic_write_json(seg_dir / MANIFEST, manifest)
    manifest = read_manifest(seg_dir)
    for channel in CHANNEL_SCHEMAS:
        (seg_dir / channel_file(channel, finished=False)).unlink(missing_ok=True)
    fsync_dir(seg_dir)
    return store.move(seg_dir, "ready"), manifest


def build_segment(store: SegmentStore, host: str, tables: Mapping[str, pa.Table], *,
                  when: datetime | None = None, seq: int | None = None) -> Path:
    """Write `tables` (channel -> rows in that channel's bronze schema) as a finished ready/ segment.

    Goes through the same journals and finishing as the collector, so test and
    demo segments are real segments.  Core channels not given are written empty; optional
    ones (`schemas.OPTIONAL_CHANNELS`) only when given.
    """
    unknown = set(tables) - set(CHANNEL_SCHEMAS)
    if unknown:
        raise ValueError(f"unknown bronze channels: {sorted(unknown)}")
    seg = ActiveSegment.create(store, host, seq=seq, when=when, channels=segment_channels(tables))
    try:
        for channel, table in tables.items():
            table = table.select(CHANNEL_SCHEMAS[channel].names).cast(CHANNEL_SCHEMAS[channel])
            for batch in table.to_batches(max_chunksize=PARQUET_ROW_GROUP_ROWS):
                seg.write(channel, batch, sync=False)
    finally:
        seg.close()
    return finish_segment(seg.path, store)
