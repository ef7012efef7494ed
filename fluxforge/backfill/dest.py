"""Where a backfill writes: a local feature tree or `s3://bucket/prefix`, plus its bookkeeping.

Layout (the live features' Hive layout, so every reader of features/ reads it):

    hf/..., bars/interval=<d>s/...     part-<segment>.parquet, written by the ETL's segment job
    _done/host=H/exchange=X/symbol=Y.json   one done-marker per finished unit, written last
    _backfill.json                      options, sources, filters, version, fingerprint, units done

Why markers last: a rerun skips exactly the units with a marker and redoes the
others from their first segment; part names derive from segment ids, so a redone
unit overwrites what a killed attempt left instead of duplicating it.  To S3, a
unit's parts are staged locally and uploaded with `sync`'s Uploader (each object
verified by HEAD checksum) before its marker is put; a failed upload fails the
unit and leaves no marker.
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from ..fsio import atomic_write_json
from ..sync.client import SyncError
from ..sync.layout import LocalFile
from ..sync.state import UploadState
from ..sync.upload import Uploader
from .location import Location

META = "_backfill.json"
DONE = "_done"


def marker_logical(unit_id: str) -> str:
    return f"{DONE}/{unit_id}.json"


class Dest:
    def __init__(self, loc: Location):
        self.loc = loc

    # -- read by the coordinator ----------------------------------------------------
    def read_meta(self) -> dict | None:
        if not self.loc.is_s3:
            p = self.loc.path / META
            return json.loads(p.read_text()) if p.is_file() else None
        t = self.loc.target()
        try:
            return json.loads(t.client.get_object(Bucket=t.bucket, Key=t.key(META))["Body"].read())
        except t.client.exceptions.NoSuchKey:
            return None

    def write_meta(self, body: dict) -> None:
        data = json.dumps(body, indent=2, sort_keys=True).encode()
        if not self.loc.is_s3:
            self.loc.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.loc.path / META, body)
            return
        t = self.loc.target()
        t.client.put_object(Bucket=t.bucket, Key=t.key(META), Body=data, ChecksumAlgorithm="SHA256")

    def done_units(self) -> set[str]:
        """Ids of the units whose done-marker exists."""
        if not self.loc.is_s3:
            root = self.loc.path / DONE
            return {p.relative_to(root).as_posix()[:-5] for p in root.rglob("*.json")} if root.is_dir() else set()
        t = self.loc.target()
        out = set()
        for page in t.client.get_paginator("list_objects_v2").paginate(Bucket=t.bucket, Prefix=t.key(DONE + "/")):
            for obj in page.get("Contents", []):
                logical = t.logical(obj["Key"])
                if logical.endswith(".json"):
                    out.add(logical[len(DONE) + 1:-5])
        return out

    # -- used by a worker ------------------------------------------------------------
    def work_root(self, cache: Path) -> Path:
        """Where the segment job writes a unit's parts: the tree itself, or a fresh staging dir for S3."""
        if not self.loc.is_s3:
            return self.loc.path
        return cache / "stage" / uuid.uuid4().hex

    def publish(self, work_root: Path, files: list[Path], markers: dict[str, dict]) -> None:
        """Make the parts durable at the destination, then write each unit's marker (last)."""
        if not self.loc.is_s3:
            for unit_id, marker in markers.items():
                atomic_write_json(self.loc.path / marker_logical(unit_id), marker)
            return
        try:
            t = self.loc.target()
            uploader = Uploader(t, UploadState(work_root / ".state"), self.loc.s3)
            out = uploader.upload([LocalFile(f, f.relative_to(work_root).as_posix()) for f in files])
            if out.failed:
                logical, reason = out.failed[0][0].logical, out.failed[0][1]
                raise SyncError(f"upload of {len(out.failed)} part(s) failed, e.g. {logical}: {reason}")
            for unit_id, marker in markers.items():
                t.client.put_object(Bucket=t.bucket, Key=t.key(marker_logical(unit_id)),
                                    Body=json.dumps(marker, sort_keys=True).encode(), ChecksumAlgorithm="SHA256")
        finally:
            shutil.rmtree(work_root, ignore_errors=True)
