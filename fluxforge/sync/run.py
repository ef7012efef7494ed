"""One `fluxforge sync` run: plan, upload, verify, clean up the bucket and the disk.

Order of a run, and why:
1. HEAD the bucket (a missing bucket or refused credentials ends the run at once
   with one clear line, before anything else happens);
2. abort this host's multipart uploads left behind by a killed run;
3. upload + verify every file that the state db does not hold as current:
   feature files and bronze data files first (finished segments in ready/,
   done/ and failed/: the backup does not wait for the ETL), then the manifest.json of each
   segment whose data files are all verified (a manifest in S3 = complete segment);
4. delete from S3 the parts that a verified compacted file replaces (S3 mirrors
   the local tree, so a download never holds the same rows twice);
5. with `delete_after_upload`, remove verified local copies (bronze segments closed
   more than an hour ago -- `fluxforge status` counts the last hour's messages, gaps and
   drops from them -- and feature files of closed partitions that compaction has nothing
   left to merge in: deleting yesterday's small parts before the daily compaction ran
   would leave the bucket with hundreds of small files per partition forever);
6. retention (see fluxforge.maintenance.retention), also when the run failed.
Nothing is deleted locally unless its upload was verified, whatever fails.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..bronze.segments import closed_time
from ..maintenance.compaction import JOURNAL, closed_before, plan_partition
from ..config import Config
from ..logs import get_logger
from ..maintenance.retention import delete_feature_file, delete_segment_dir, enforce
from ..observe.stream_health import WINDOW_S
from .bronze_integrity import damaged
from .client import S3Target, check_bucket, error_code
from .layout import LocalFile, done_segments, feature_files, finished_segments, partition_date, segment_files
from .state import UploadState
from .upload import Uploader, head_checksum

log = get_logger("fluxforge.sync")


@dataclass
class SyncPlan:
    data: list[LocalFile] = field(default_factory=list)
    manifests: list[LocalFile] = field(default_factory=list)
    current: int = 0

    @property
    def files(self) -> list[LocalFile]:
        return self.data + self.manifests

    def bytes(self) -> int:
        return sum(f.path.stat().st_size for f in self.files if f.path.exists())


@dataclass
class SyncReport:
    planned: int = 0
    uploaded: int = 0
    bytes: int = 0
    already_current: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    damaged: list[tuple[str, str]] = field(default_factory=list)  # bronze no longer as its manifest says: kept
    superseded_deleted: int = 0
    local_deleted: int = 0
    retention_deleted: int = 0
    retention_bytes: int = 0


def plan(cfg: Config, state: UploadState) -> SyncPlan:
    p = SyncPlan()
    if cfg.sync.upload_features:
        for f in feature_files(cfg):
            if state.is_current(f.logical, f.path):
                p.current += 1
            else:
                p.data.append(f)
    if cfg.sync.upload_bronze:
        for _state, seg in finished_segments(cfg):
            for f in segment_files(seg):
                if state.is_current(f.logical, f.path):
                    p.current += 1
                elif f.is_manifest:
                    p.manifests.append(f)
                else:
                    p.data.append(f)
    return p


def abort_stale_multipart(target: S3Target, host_id: str) -> int:
    """Abort in-progress multipart uploads of this host's files (left by a killed run)."""
    marker = f"seg-{host_id}-"
    n = 0
    pages = target.client.get_paginator("list_multipart_uploads").paginate(Bucket=target.bucket, Prefix=target.key(""))
    for page in pages:
        for up in page.get("Uploads", []):
            if marker in up["Key"]:
                target.client.abort_multipart_upload(Bucket=target.bucket, Key=up["Key"], UploadId=up["UploadId"])
                n += 1
    if n:
        log.info("stale_multipart_uploads_aborted", count=n)
    return n


def delete_superseded(target: S3Target, state: UploadState) -> int:
    """Remove from S3 (and the db) the parts replaced by verified compacted files."""
    n = 0
    for rec in state.with_covers():
        for logical in rec.covers or []:
            if logical in state:
                target.client.delete_object(Bucket=target.bucket, Key=target.key(logical))
                state.forget(logical)
                n += 1
        state.covers_done(rec.logical)  # once: a part the ETL writes again later is not deleted
    return n


def delete_uploaded_locally(cfg: Config, state: UploadState, now: float | None = None) -> int:
    n = 0
    now = time.time() if now is None else now
    for seg in done_segments(cfg):
        files = segment_files(seg)
        if files and all(state.is_current(f.logical, f.path) for f in files) and not in_status_window(seg, now):
            delete_segment_dir(seg)
            state.forget_deleted(f.logical for f in files)
            n += 1
    closed = closed_before(cfg).isoformat()
    compacted: dict[str, bool] = {}
    for f in list(feature_files(cfg)):
        if partition_date(f) < closed and state.is_current(f.logical, f.path):
            partition = str(f.path.parent)
            if partition not in compacted:  # planned once per partition, not once per file in it
                compacted[partition] = is_compacted(cfg, f.path.parent)
            if compacted[partition]:
                delete_feature_file(f.path, cfg.features_dir)
                state.forget_deleted([f.logical])
                n += 1
    return n


def in_status_window(seg: Path, now: float) -> bool:
    """Whether `fluxforge status` still reads this finished segment: it counts each stream's
    messages, gaps and dropped rows of the last hour from the segments themselves
    (observe/stream_health.py), so deleting one closed less than an hour ago would hide that
    hour's incidents from it and from its max_gaps_per_hour / max_dropped_per_hour checks.  The
    close time is the one status reads (the manifest's, else its mtime); one more than the window
    ahead of `now` (the clock stepped back) does not hold the segment back."""
    try:
        return abs(now - closed_time(seg)) < WINDOW_S
    except OSError:  # gone meanwhile
        return False


def is_compacted(cfg: Config, partition) -> bool:
    """Nothing left for compaction to merge (and no merge in progress) in this closed partition."""
    if (partition / JOURNAL).exists():
        return False
    return not plan_partition(partition, int(cfg.compaction.target_file_mb * 1024 * 1024))


def run_sync(cfg: Config, target: S3Target, state: UploadState, dry_run: bool = False, progress: Any = None) -> SyncReport:
    report = SyncReport()
    p = plan(cfg, state)
    report.planned, report.already_current = len(p.files), p.current
    if dry_run:
        bad = _set_aside_damaged(cfg, p, report)
        held = {f.segment for f in bad}  # their segments' manifests wait too
        shipped = [f for f in p.files if f not in bad and not (f.is_manifest and f.segment in held)]
        for f in shipped:
            print(f"upload {f.path} -> s3://{target.bucket}/{target.key(f.logical)}")
        size = SyncPlan(data=shipped).bytes()
        print(f"# dry run: {len(shipped)} files ({size / 1e6:.1f} MB) to upload, {p.current} already verified in S3"
              + (f", {len(bad)} damaged kept back" if bad else ""))
        return report
    try:
        _upload_all(cfg, target, state, p, report, progress)
    finally:  # also when S3 is unreachable: the disk must not fill up meanwhile
        deleted = enforce(cfg, state).deleted
        report.retention_deleted = len(deleted)
        report.retention_bytes = sum(v.bytes for v in deleted)
    return report


def _set_aside_damaged(cfg: Config, p: SyncPlan, report: SyncReport) -> dict[LocalFile, str]:
    """The planned bronze files that no longer match their manifests: named, never uploaded."""
    bad = damaged(p.data, cfg.sync.workers)
    for f, why in bad.items():
        log.error("bronze_file_damaged", file=f.logical, path=str(f.path), detail=why,
                  hint="not uploaded, kept on disk; docs/operations.md, 'A damaged bronze file'")
        report.damaged.append((str(f.path), why))
    return bad


def _upload_all(cfg: Config, target: S3Target, state: UploadState, p: SyncPlan, report: SyncReport,
                progress: Any) -> None:
    check_bucket(target)
    try:
        abort_stale_multipart(target, cfg.host_id)
    except (ClientError, BotoCoreError) as e:  # some S3-compatible stores lack the listing: not fatal
        log.warning("multipart_listing_failed", error=error_code(e))
    if progress is not None:
        progress.total = p.bytes()
    uploader = Uploader(target, state, cfg.sync, progress)
    bad = _set_aside_damaged(cfg, p, report)
    first = uploader.upload([f for f in p.data if f not in bad])
    ready = [m for m in p.manifests
             if all(state.is_current(f.logical, f.path) for f in segment_files(m.path.parent) if not f.is_manifest)]
    second = uploader.upload(ready)
    for outcome in (first, second):
        report.uploaded += len(outcome.uploaded)
        report.bytes += outcome.bytes
        report.failed += [(f.logical, why) for f, why in outcome.failed]
    report.superseded_deleted = delete_superseded(target, state)
    if cfg.sync.delete_after_upload:
        report.local_deleted = delete_uploaded_locally(cfg, state)


def verify_remote(target: S3Target, state: UploadState) -> list[tuple[str, str]]:
    """HEAD every recorded object; forget (so the next run re-uploads) those missing or changed."""
    bad = []
    for rec in state.all():
        key = target.key(rec.logical)
        try:
            length, remote, _ctype = head_checksum(target, key, rec.algorithm)
        except ClientError as e:
            if error_code(e) not in ("404", "NoSuchKey", "NotFound"):
                raise
            length, remote = -1, None
        if length != rec.size or (remote or "").split("-")[0] != rec.checksum.split("-")[0]:
            bad.append((rec.logical, f"expected {rec.size} B {rec.algorithm} {rec.checksum}, S3 has {length} B {remote}"))
            log.error("remote_object_mismatch", file=rec.logical, expected=rec.checksum, found=remote,
                      size=rec.size, remote_size=length)
            state.forget(rec.logical)
    return bad
