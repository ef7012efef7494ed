"""Disk retention: keep the data filesystem below its watermarks by deleting what S3 already holds.

Why: an SD card that fills up stops the collector.  When usage of the
filesystem holding `data_dir` exceeds `retention.disk_high_watermark` percent,
the oldest data whose upload is verified (per the sync state db: same size and
mtime as the uploaded file) is deleted -- done bronze segments first, then
failed/ ones, then feature files, oldest first -- until usage is below
`disk_low_watermark`.  Data that is not uploaded is only deleted when
`allow_unsynced_deletion` is set, after all uploaded data, and each such
deletion is logged as an error.

Why ready/ is special: a ready/ segment has not been through the ETL yet.  Its
bronze is safe in S3 once verified, but freeing it locally means the live ETL
never computes its features (they can be recomputed with `fluxforge replay` from
the bucket).  So it is freed only when the operator set `free_unprocessed`, last
among verified data, with an error-level event naming the segment.  active/
and processing/ are never touched (a journal being written, a segment being read).
A segment is deleted by renaming it to a hidden name first, so a crash never
leaves a half-deleted segment that looks complete.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import Config
from ..fsio import durable_rename, fsync_dir
from ..logs import get_logger
from ..sync.layout import LocalFile, feature_files, finished_segments, partition_date, segment_files
from ..sync.state import UploadState

DELETING_PREFIX = ".deleting-"
log = get_logger("fluxforge.retention")


def disk_usage_percent(path: Path) -> float:
    """Used percent as df(1) shows it: used / (used + available to unprivileged users)."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    return 100.0 * used / max(used + avail, 1)


@dataclass
class Victim:
    kind: str            # "bronze" | "features"
    path: Path
    files: list[LocalFile]
    uploaded: bool
    state: str | None = None  # a segment's state dir (ready | done | failed)

    @property
    def bytes(self) -> int:
        return sum(f.path.stat().st_size for f in self.files if f.path.exists())


@dataclass
class RetentionReport:
    usage_before: float = 0.0
    usage_after: float = 0.0
    deleted: list[Victim] = field(default_factory=list)
    blocked_unsynced: int = 0  # un-uploaded items that would have been deleted if allowed


def delete_segment_dir(seg_dir: Path) -> None:
    """Hide the segment with one durable rename, then remove it (FileNotFoundError: it moved away)."""
    hidden = seg_dir.with_name(DELETING_PREFIX + seg_dir.name)
    durable_rename(seg_dir, hidden)
    shutil.rmtree(hidden)
    fsync_dir(hidden.parent)


def delete_feature_file(path: Path, root: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)
    parent = path.parent
    while parent != root and parent.is_dir() and not any(parent.iterdir()):
        try:
            parent.rmdir()
        except OSError:  # the ETL just created a file in it
            break
        parent = parent.parent


def sweep_half_deleted(cfg: Config) -> None:
    """Finish segment deletions interrupted by a crash."""
    for state in ("ready", "done", "failed"):
        d = cfg.segments_dir / state
        if d.is_dir():
            for p in d.glob(DELETING_PREFIX + "*"):
                shutil.rmtree(p, ignore_errors=True)


def victims(cfg: Config, state: UploadState) -> list[Victim]:
    """Deletion candidates in order: uploaded done/ then failed/ bronze, uploaded features, uploaded
    ready/ bronze (only with `free_unprocessed`), then the un-uploaded ones in the same order."""
    by_state: dict[str, list[Victim]] = {"ready": [], "done": [], "failed": []}
    for seg_state, seg in finished_segments(cfg):
        files = segment_files(seg)
        uploaded = bool(files) and all(state.is_current(f.logical, f.path) for f in files)
        by_state[seg_state].append(Victim("bronze", seg, files, uploaded, seg_state))
    features = [Victim("features", f.path, [f], state.is_current(f.logical, f.path))
                for f in sorted(feature_files(cfg), key=lambda f: (partition_date(f), f.logical))]
    ready = by_state["ready"] if cfg.retention.free_unprocessed else []
    every = by_state["done"] + by_state["failed"] + features + ready
    return [v for v in every if v.uploaded] + [v for v in every if not v.uploaded]


def enforce(cfg: Config, state: UploadState, usage: Callable[[Path], float] = disk_usage_percent,
            dry_run: bool = False) -> RetentionReport:
    """Delete until usage < low watermark, if it is above the high watermark."""
    rc = cfg.retention
    report = RetentionReport()
    if not cfg.data_dir.is_dir():
        return report
    sweep_half_deleted(cfg)
    report.usage_before = report.usage_after = usage(cfg.data_dir)
    if report.usage_before <= rc.disk_high_watermark:
        return report
    log.warning("disk_above_high_watermark", usage_percent=round(report.usage_before, 1),
                high=rc.disk_high_watermark, low=rc.disk_low_watermark)
    for v in victims(cfg, state):
        if report.usage_after < rc.disk_low_watermark:
            break
        if not v.uploaded and not rc.allow_unsynced_deletion:
            report.blocked_unsynced += 1
            continue
        size = v.bytes
        if dry_run:
            print(f"would delete {v.kind} {v.path} ({size / 1e6:.1f} MB, {'uploaded' if v.uploaded else 'NOT UPLOADED'})")
        elif v.kind == "bronze":
            try:
                delete_segment_dir(v.path)
            except FileNotFoundError:  # the ETL claimed it meanwhile: not ours to free any more
                continue
        else:
            delete_feature_file(v.path, cfg.features_dir)
        if v.state == "ready":
            log.error("retention_freed_unprocessed_segment", segment=v.path.name, bytes=size, dry_run=dry_run,
                      uploaded=v.uploaded, reason="free_unprocessed is set: the ETL will not compute its features",
                      hint="fluxforge sync --download bronze/.../<segment>/ then fluxforge replay (docs/sync.md)")
        if v.uploaded:
            log.info("retention_deleted", kind=v.kind, path=str(v.path), bytes=size, dry_run=dry_run)
            if not dry_run:  # the record of a deleted local copy is no longer needed: the table stays bounded
                state.forget_deleted(f.logical for f in v.files)
        else:
            log.error("retention_deleted_unsynced_data", kind=v.kind, path=str(v.path), bytes=size, dry_run=dry_run,
                      reason="allow_unsynced_deletion is set; this data was never uploaded and is gone")
        report.deleted.append(v)
        report.usage_after = usage(cfg.data_dir) if not dry_run else report.usage_after
    if report.usage_after > rc.disk_low_watermark and report.blocked_unsynced:
        log.error("retention_blocked_by_unsynced_data", usage_percent=round(report.usage_after, 1),
                  unsynced_items=report.blocked_unsynced,
                  hint="sync is failing or disabled; data not yet in S3 is kept (allow_unsynced_deletion=false)")
    return report
