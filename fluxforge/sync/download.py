"""`fluxforge sync --download PREFIX --to DIR`: restore objects (e.g. a host's bronze) for replay.

Why verified too: a restore feeds research and replays, so each object is
written to a hidden temp name, checked against the checksum S3 stored for it
(HEAD ChecksumMode=ENABLED, full or composite), fsync'd and only then renamed to
`DIR/<key below the configured prefix>`.  Files already present with the same
size are skipped, so an interrupted restore resumes.  Only keys that follow the
documented layout are written (fluxforge.sync.restore_keys); the others are
listed in `refused` with the reason and never touch the disk.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boto3.s3.transfer import create_transfer_manager

from ..fsio import fsync_dir, fsync_file, tmp_name
from ..logs import get_logger
from .checksums import file_checksum
from .client import S3Target, check_bucket, transfer_config
from .restore_keys import RefusedKey, restore_path
from ..config import SyncConfig

log = get_logger("fluxforge.sync")


@dataclass
class DownloadReport:
    downloaded: int = 0
    skipped: int = 0
    bytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def _part_size(target: S3Target, key: str, etag: str) -> int:
    """Part size of a multipart object (size of part 1), 0 for a single-part object."""
    if "-" not in etag.strip('"'):
        return 0
    return target.client.head_object(Bucket=target.bucket, Key=key, PartNumber=1)["ContentLength"]


def _checksum_of(head: dict[str, Any]) -> tuple[str | None, str | None]:
    for alg in ("CRC32C", "SHA256", "CRC32", "SHA1"):
        if head.get(f"Checksum{alg}"):
            return alg, head[f"Checksum{alg}"]
    return None, None


def download(target: S3Target, cfg: SyncConfig, prefix: str, dest: Path, progress: Any = None) -> DownloadReport:
    report = DownloadReport()
    check_bucket(target)
    listing = []
    for page in target.client.get_paginator("list_objects_v2").paginate(
            Bucket=target.bucket, Prefix=target.key(prefix.lstrip("/"))):
        listing.extend(page.get("Contents", []))
    todo = []
    for obj in listing:
        try:
            out = restore_path(dest, target.logical(obj["Key"]))
        except RefusedKey as e:
            report.refused.append((obj["Key"], str(e)))
            log.error("download_refused", key=obj["Key"], reason=str(e))
            continue
        if out.exists() and out.stat().st_size == obj["Size"]:
            report.skipped += 1
            continue
        todo.append((obj, out))
    if progress is not None:
        progress.total = sum(o["Size"] for o, _ in todo)
    manager = create_transfer_manager(target.client, transfer_config(cfg))

    def fetch(obj: dict[str, Any], out: Path) -> int:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_name(out)
        try:
            manager.download(target.bucket, obj["Key"], str(tmp)).result()
            head = target.client.head_object(Bucket=target.bucket, Key=obj["Key"], ChecksumMode="ENABLED")
            alg, remote = _checksum_of(head)
            if alg:
                local = file_checksum(tmp, alg, _part_size(target, obj["Key"], head["ETag"]))
                if not local.matches(remote, head.get("ChecksumType")):
                    raise ValueError(f"{alg} of the downloaded file does not match S3 ({remote})")
            if tmp.stat().st_size != head["ContentLength"]:
                raise ValueError("size differs from S3")
            fsync_file(tmp)
            os.replace(tmp, out)
            fsync_dir(out.parent)
            return obj["Size"]
        finally:
            tmp.unlink(missing_ok=True)

    try:
        with ThreadPoolExecutor(cfg.workers, thread_name_prefix="download") as pool:
            futures = [(obj, pool.submit(fetch, obj, out)) for obj, out in todo]
            for obj, fut in futures:
                try:
                    size = fut.result()
                except Exception as e:  # one bad object must not stop the restore of the others
                    report.failed.append((obj["Key"], str(e)))
                    log.error("download_failed", key=obj["Key"], detail=str(e))
                    continue
                report.downloaded += 1
                report.bytes += size
                if progress is not None:
                    progress.advance(size)
    finally:
        manager.shutdown()
    return report
