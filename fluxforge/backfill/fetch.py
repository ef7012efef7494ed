"""Bring one S3 bronze segment into a worker's local cache, each file sha256-verified against its manifest.

Why a cache directory: the segment job reads a segment directory (the same code
path as replay and the live ETL), and all streams of a host read the same
segments, so a worker downloads each segment once.  A segment appears in the
cache only complete: files go into a hidden temp directory, are checked against
the manifest's sha256 and byte counts, and the directory is renamed into place
(two workers racing on one segment both verify; the second rename loses and its
copy is dropped).  A mismatch raises `BadSegment`, which the unit treats exactly
like replay treats a corrupt local segment.  Throttling (503 SlowDown) and
connection resets on a request are retried by botocore; a read that breaks
mid-body is retried here, whole file, up to `max_attempts`.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import uuid
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from ..bronze.segments import MANIFEST
from ..etl.bronze_reader import BadSegment
from ..fsio import atomic_write_json
from ..sync.client import S3Target, SyncError, error_code, fatal_message
from .source import SegmentRef

CHUNK = 1 << 20


def _download(target: S3Target, key: str, out: Path, attempts: int) -> str:
    """Stream the object to `out`; returns its sha256.  Retries broken reads."""
    for attempt in range(1, attempts + 1):
        try:
            digest = hashlib.sha256()
            body = target.client.get_object(Bucket=target.bucket, Key=key)["Body"]
            with open(out, "wb") as fh:
                for chunk in body.iter_chunks(CHUNK):
                    digest.update(chunk)
                    fh.write(chunk)
            return digest.hexdigest()
        except (ClientError, BotoCoreError) as e:
            if error_code(e) in ("NoSuchKey", "404"):
                raise BadSegment(f"{key.rsplit('/', 1)[-1]}: listed in {MANIFEST} but missing in S3") from None
            fatal = fatal_message(e, target)
            if fatal:
                raise SyncError(fatal) from None
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def cached_segment(ref: SegmentRef, target: S3Target, cache: Path, attempts: int) -> Path:
    """The local directory of `ref`, downloading and verifying it first if needed."""
    final = cache / ref.name
    if (final / MANIFEST).is_file():
        return final
    manifest = ref.manifest
    if not isinstance(manifest, dict) or not isinstance(manifest.get("channels"), dict):
        raise BadSegment(f"{MANIFEST} is not a valid manifest")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{ref.name}.{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for channel, entry in sorted(manifest["channels"].items()):
            name = (entry or {}).get("file") or f"{channel}.parquet"
            if "/" in name or name.startswith("."):
                raise BadSegment(f"{MANIFEST} names an unsafe file {name!r}")
            digest = _download(target, target.key(f"{ref.logical}/{name}"), tmp / name, attempts)
            if entry.get("sha256") and digest != entry["sha256"]:
                raise BadSegment(f"{name}: sha256 {digest[:16]}... in S3 does not match {MANIFEST} "
                                 f"({str(entry['sha256'])[:16]}...)")
        atomic_write_json(tmp / MANIFEST, manifest)  # last: its presence marks a complete copy
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
