"""Which local files are shipped, and their logical paths (= S3 keys below the prefix).

    bronze/host=<host>/date=<segment start date>/<segment>/<file>   from segments/{ready,done,failed}/<segment>/
    features/<path relative to data_dir/features>                     from features/**.parquet

Why a logical path: it names the file the same way locally, in the state db
and in the bucket, and it carries the segment id (which carries the host id),
so a fleet sharing a bucket never overwrites itself.  Hidden names (temp files,
journals) are never shipped.  A segment's manifest.json is listed separately so
it can be uploaded last: a manifest in the bucket means the segment is complete.

Why every finished state: the bronze backup must not wait for the ETL.  A
segment is shipped as soon as it is finished (ready/), also when the ETL refused
it (failed/); its key never names its state, and a rename between states keeps
size and mtime, so a segment is uploaded once whatever the ETL does.  The ETL's
own `reason.txt` is not bronze and is not shipped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..maintenance.compaction import compaction_metadata
from ..config import Config
from ..bronze.segments import MANIFEST, REASON, SegmentId, SegmentStore

BACKUP_STATES = ("ready", "done", "failed")  # finished segments; never active/ (a journal) or processing/


@dataclass(frozen=True)
class LocalFile:
    path: Path
    logical: str
    segment: str | None = None  # bronze only

    @property
    def is_manifest(self) -> bool:
        return self.segment is not None and self.path.name == MANIFEST

    def covers(self) -> list[str] | None:
        """Logical paths of the parts a compacted feature file replaces (None if it replaces nothing)."""
        if self.segment is not None or "--" not in self.path.name:
            return None
        meta = compaction_metadata(self.path)
        if not meta:
            return None
        base = self.logical.rsplit("/", 1)[0]
        # original ETL parts, and the direct inputs (an earlier merged file merged again)
        names = dict.fromkeys(meta["covers"] + meta.get("inputs", []))
        return [f"{base}/{name}" for name in names if name != self.path.name]


def bronze_prefix(seg: SegmentId) -> str:
    return f"bronze/host={seg.host}/date={seg.start_datetime.date().isoformat()}/{seg.name}"


def segment_files(seg_dir: Path) -> list[LocalFile]:
    """A finished segment's files, manifest last ([] if the ETL or retention just moved it away)."""
    sid = SegmentId.parse(seg_dir.name)
    base = bronze_prefix(sid)
    try:
        found = [p for p in seg_dir.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != REASON]
    except FileNotFoundError:
        return []
    files = sorted(found, key=lambda p: (p.name == MANIFEST, p.name))
    return [LocalFile(p, f"{base}/{p.name}", seg_dir.name) for p in files]


def done_segments(cfg: Config) -> list[Path]:
    return SegmentStore(cfg.segments_dir).list("done")


def finished_segments(cfg: Config) -> list[tuple[str, Path]]:
    """(state, segment dir) of every segment the bronze backup ships, oldest first per state."""
    store = SegmentStore(cfg.segments_dir)
    return [(state, seg) for state in BACKUP_STATES for seg in store.list(state)]


def feature_files(cfg: Config) -> Iterator[LocalFile]:
    """Every visible Parquet file under features/, in path order (so oldest dates first per table)."""
    root = cfg.features_dir
    if not root.is_dir():
        return
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.endswith(".parquet"):
                continue
            path = Path(dirpath) / name
            yield LocalFile(path, "features/" + path.relative_to(root).as_posix())


def partition_date(f: LocalFile) -> str:
    """The `date=` component of a feature file's path ('' if none)."""
    for part in f.logical.split("/"):
        if part.startswith("date="):
            return part[5:]
    return ""
