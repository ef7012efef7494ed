"""The replay ring after a restart: the recent rows that are already in Parquet.

Why: the hub's ring of recent rows is memory.  Without this, an ETL that restarts (an
upgrade, a reboot, a crash) answers "the last 30 minutes" with only what it has published
since it started, and a subscriber that reconnects with `since=` after the restart finds a
gap: the rows published while it was disconnected are in Parquet but in no ring.  The live
replay is "from the active segment and recent parts": at start-up, before any subscriber can
connect, the ring is given the rows of the segments already landed whose times fall within
`etl.live.replay_minutes`, flagged replay, oldest segment first.  Left out: the segments the
ETL is about to publish again -- the checkpoint's last one when `restart_replay` will send it,
and those not committed (still active, ready or processing) -- which would be in the ring twice.
"""
from __future__ import annotations

import heapq
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..bronze.segments import SegmentId
from ..maintenance.compaction import covered_parts
from .live_rows import Publication, live_table, part_files
from .naming import MS_PER_DAY, date_of_day, part_segments

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def recent_parts(features: Path, exclude: set[str], from_ms: int, now_ms: int) -> list[Publication]:
    """The rows at or after `from_ms` of the part files in the partitions dated from `from_ms` to
    `now_ms`, as replay Publications, each file's parts in path order: each host's files in segment
    order, the hosts' interleaved by the start of each file's first segment.

    A part named after one segment is left out if the segment is in `exclude`.  A file compaction
    merged (`part-<first>--<last>`, a partition closed before midnight, or the day before with a
    long `replay_minutes`) is read like the others -- only its row groups that reach `from_ms`
    (`_rows_since`) --: its segments are landed and committed, and `restart_replay` never finds a
    segment inside one (its inputs, if still there, are left out).
    Each host's files are read newest first (by their last segment) up to the first with no row
    that recent: a host's segments are in time order, other hosts' (a renamed host's, several
    hosts' in one tree) are not."""
    files = []
    for day in range(from_ms // MS_PER_DAY, now_ms // MS_PER_DAY + 1):
        for product, key, path in part_files(features, date=date_of_day(day)):
            try:
                files.append((tuple(part_segments(path)), product, key, path))
            except ValueError:
                continue  # not the ETL's (or compaction's) file
    # a merged file's inputs still beside it (compaction stopped between its rename and the unlinks,
    # which its next run finishes): the merged file has their rows
    merged = {}
    for segments, _product, _key, path in files:
        if len(segments) > 1:
            merged.setdefault(path.parent, set()).update(covered_parts(path))
    by_file: dict[tuple[str, ...], list] = {}
    for segments, product, key, path in files:
        if len(segments) == 1 and (segments[0] in exclude or path.name in merged.get(path.parent, ())):
            continue
        by_file.setdefault(segments, []).append((product, key, path))
    by_host: dict[str, list[tuple[str, ...]]] = {}
    for segments in by_file:
        by_host.setdefault(SegmentId.parse(segments[-1]).host, []).append(segments)
    hosts: list[list[tuple[str, list[Publication]]]] = []  # each host's (first segment's start, rows), in seq order
    for host, host_files in sorted(by_host.items()):
        kept = []
        for segments in sorted(host_files, key=lambda s: SegmentId.parse(s[-1]).sort_key, reverse=True):
            pubs = [Publication(product, live_table(key, [rows]), True, [(key, rows.num_rows)])
                    for product, key, path in by_file[segments]
                    if (rows := _rows_since(path, from_ms)).num_rows]
            if not pubs:
                break
            kept.append((SegmentId.parse(segments[0]).start, pubs))
        hosts.append(kept[::-1])
    # the hosts' files interleaved by start time (a stream moved to a renamed host stays in time
    # order), each host's kept in its own order (a clock step does not reorder its segments)
    return [p for _, pubs in heapq.merge(*hosts, key=lambda k: k[0]) for p in pubs]


def _rows_since(path: Path, from_ms: int) -> pa.Table:
    """The rows at or after `from_ms` of one part file, reading only the row groups whose timestamp
    statistics reach it: a file compaction merged holds a day of one stream and product (a day of
    1 s hf rows is ~110 MB in memory, in row groups of `etl.row_group_rows`), and a restart after
    midnight wants its last minutes.  A row group without statistics is read."""
    pf = pq.ParquetFile(path)
    md = pf.metadata
    col = next((i for i in range(md.num_columns) if md.schema.column(i).path == "timestamp"), None)
    groups = [g for g in range(md.num_row_groups) if col is None or _reaches(md.row_group(g).column(col), from_ms)]
    table = pf.read_row_groups(groups).replace_schema_metadata(None)  # (a merged file's: compaction's)
    ms = pc.cast(table.column("timestamp"), pa.int64())
    return table.filter(pc.greater_equal(ms, from_ms))


def _reaches(chunk: pq.ColumnChunkMetaData, from_ms: int) -> bool:
    """Whether a row group's timestamp column may hold a time at or after `from_ms`."""
    stats = chunk.statistics
    if stats is None or not stats.has_min_max or not isinstance(stats.max, datetime):
        return True
    newest = stats.max if stats.max.tzinfo else stats.max.replace(tzinfo=timezone.utc)  # UTC either way
    return (newest - EPOCH) // timedelta(milliseconds=1) >= from_ms
