"""List the bronze segments of a backfill SOURCE: local directories or the sync layout in S3.

Why manifests up front: a segment is selected by its manifest's time range
(`--start/--end`), and in S3 a manifest is the proof that a segment is complete
(`fluxforge sync` uploads it last), so a segment without one is skipped with a
reason instead of being read half-uploaded.  Local sources are found exactly as
`fluxforge replay` finds them (`find_segments`), so both see the same segments.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..bronze.segments import MANIFEST, SegmentId
from ..etl.replay import find_segments
from .location import Location


@dataclass(frozen=True)
class SegmentRef:
    """One segment: where it is (a local directory or an S3 logical dir) and its manifest (None: unreadable)."""

    name: str
    local: str | None = None
    logical: str | None = None  # S3: bronze/host=H/date=D/<name>, below the prefix
    manifest: dict | None = field(default=None, compare=False, hash=False)

    @property
    def id(self) -> SegmentId:
        return SegmentId.parse(self.name)

    @property
    def host(self) -> str:
        return self.id.host

    def time_range(self) -> tuple[int | None, int | None]:
        """(min, max) exchange ms over the manifest's channels (None where unknown)."""
        lows, highs = [], []
        for entry in ((self.manifest or {}).get("channels") or {}).values():
            if isinstance(entry, dict):
                if entry.get("min_ts") is not None:
                    lows.append(int(entry["min_ts"]))
                if entry.get("max_ts") is not None:
                    highs.append(int(entry["max_ts"]))
        return (min(lows) if lows else None, max(highs) if highs else None)


@dataclass
class Listing:
    segments: list[SegmentRef] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (segment, reason)


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None  # the segment job will refuse it with the same reason replay gives


def list_local(sources: list[Path], host_ok) -> Listing:
    out = Listing()
    for seg_dir in find_segments(sources):
        if host_ok(SegmentId.parse(seg_dir.name).host):
            out.segments.append(SegmentRef(seg_dir.name, local=str(seg_dir), manifest=_read_manifest(seg_dir)))
    return out


def list_s3(loc: Location, host_ok, date_ok) -> Listing:
    """Segments under `<prefix>/bronze/host=H/date=D/<segment>/`, manifests fetched in parallel."""
    target = loc.target()
    dirs: dict[str, set[str]] = {}
    for page in target.client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket,
                                                                        Prefix=target.key("bronze/")):
        for obj in page.get("Contents", []):
            parts = target.logical(obj["Key"]).split("/")
            if len(parts) != 5 or not parts[1].startswith("host=") or not parts[2].startswith("date="):
                continue
            if not SegmentId.is_segment_name(parts[3]) or not host_ok(parts[1][5:]) or not date_ok(parts[2][5:]):
                continue
            dirs.setdefault("/".join(parts[:4]), set()).add(parts[4])
    out = Listing()
    complete = []
    for logical, files in sorted(dirs.items()):
        name = logical.rsplit("/", 1)[1]
        if MANIFEST in files:
            complete.append((name, logical))
        else:
            out.skipped.append((name, f"incomplete in S3: no {MANIFEST} (upload unfinished)"))

    def manifest(item: tuple[str, str]) -> SegmentRef:
        name, logical = item
        body = target.client.get_object(Bucket=target.bucket, Key=target.key(f"{logical}/{MANIFEST}"))["Body"]
        try:
            data = json.loads(body.read())
        except ValueError:
            data = None
        return SegmentRef(name, logical=logical, manifest=data)

    with ThreadPoolExecutor(8, thread_name_prefix="manifest") as pool:
        out.segments = list(pool.map(manifest, complete))
    out.segments.sort(key=lambda r: r.id)
    return out
