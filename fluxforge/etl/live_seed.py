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

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..bronze.segments import SegmentId
from .live_rows import Publication, live_table, part_files
from .naming import MS_PER_DAY, date_of_day


def recent_parts(features: Path, exclude: set[str], from_ms: int, now_ms: int) -> list[Publication]:
    """The rows at or after `from_ms` of the parts of segments not in `exclude`, in the partitions
    dated from `from_ms` to `now_ms`, as replay Publications: oldest segment first, each segment's
    parts in path order.  Reads segments newest first and stops at the first with no row that
    recent (older ones are older still: one host's segments are in time order)."""
    by_segment: dict[str, list] = {}
    for day in range(from_ms // MS_PER_DAY, now_ms // MS_PER_DAY + 1):
        for product, key, path in part_files(features, date=date_of_day(day)):
            segment = path.name[len("part-"):-len(".parquet")]
            if SegmentId.is_segment_name(segment) and segment not in exclude:
                by_segment.setdefault(segment, []).append((product, key, path))
    out: list[list[Publication]] = []
    for segment in sorted(by_segment, key=lambda s: SegmentId.parse(s).sort_key, reverse=True):
        pubs = [Publication(product, live_table(key, [rows]), True) for product, key, path in by_segment[segment]
                if (rows := _since(pq.read_table(path), from_ms)).num_rows]
        if not pubs:
            break
        out.append(pubs)
    return [p for pubs in reversed(out) for p in pubs]


def _since(table: pa.Table, from_ms: int) -> pa.Table:
    ms = pc.cast(table.column("timestamp"), pa.int64())
    return table.filter(pc.greater_equal(ms, from_ms))
