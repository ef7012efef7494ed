"""Sync backlog and last verified upload, read from the sync branch's own state (`state/sync.sqlite`).

Why read-only and through `sync.run.plan`: status must never create or lock
the sync database (it may run as an unprivileged member of the fluxforge group,
while a sync run holds the db), and "what is waiting" must be decided exactly as
the next sync run will decide it.  "Stale" means a file has waited longer than
`status.max_sync_age` -- an idle appliance with nothing new to ship is fine.
A corrupt database is reported (`corrupt`, with the fix) whether or not sync is
enabled, because retention relies on it too.  Counts are done in SQL.
"""
from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import Config
from .status_checks import human_age
from ..sync.state import DB_NAME, NoUploads, SyncStateCorrupt, UploadState, check_integrity, is_corrupt_error


def open_uploads_read_only(db_path: Path) -> UploadState | None:
    """The sync branch's `UploadState` over a read-only connection, or None when no sync ran yet.

    `UploadState()` would create the file and switch it to WAL (both writes), so
    its __init__ is skipped; every query method is the sync code's own.
    """
    if not db_path.is_file():
        return None
    for mode in ("ro", "ro&immutable=1"):  # immutable: no write access for the WAL index (-shm)
        db = None
        try:
            db = sqlite3.connect(f"file:{db_path}?mode={mode}", uri=True, timeout=5)
            check_integrity(db, db_path)
            db.execute("SELECT 1 FROM uploaded LIMIT 1")
        except (sqlite3.Error, SyncStateCorrupt) as e:
            if db is not None:
                db.close()
            if isinstance(e, SyncStateCorrupt) or is_corrupt_error(e):
                raise e if isinstance(e, SyncStateCorrupt) else SyncStateCorrupt(db_path, str(e)) from None
            continue
        state = UploadState.__new__(UploadState)
        state.path, state.db = db_path, db
        return state
    raise OSError(f"{db_path}: cannot read the sync database")


def sync_status(cfg: Config, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    out: dict[str, Any] = {"enabled": cfg.sync.enabled, "bucket": cfg.sync.bucket, "stale": None, "corrupt": None}
    try:
        uploads = open_uploads_read_only(cfg.state_dir / DB_NAME)
    except SyncStateCorrupt as e:
        out.update(corrupt=e.short, summary=f"sync state unreadable: {e.short}")
        return out
    except OSError as e:
        uploads = None
        if cfg.sync.enabled:
            out.update(error=str(e), summary=f"cannot read sync state: {e}")
            out["stale"] = out["summary"]
            return out
    if not cfg.sync.enabled:
        if uploads:
            uploads.close()
        out["summary"] = "disabled (sync.enabled: false)"
        return out
    from ..sync.run import plan  # boto3/botocore: only worth importing when sync is on

    try:
        pending = plan(cfg, uploads or NoUploads()).files
        uploaded = uploads.count() if uploads else 0
        last = uploads.last_upload() if uploads else None
    finally:
        if uploads:
            uploads.close()
    mtimes = [f.path.stat().st_mtime for f in pending if f.path.exists()]
    oldest = round(now - min(mtimes), 1) if mtimes else None
    last_age = round(now - datetime.fromisoformat(last).timestamp(), 1) if last else None
    out.update({
        "uploaded_files": uploaded,
        "last_upload": last,
        "last_upload_age_s": last_age,
        "backlog_files": len(pending),
        "backlog_bytes": sum(f.path.stat().st_size for f in pending if f.path.exists()),
        "oldest_pending_age_s": oldest,
    })
    if oldest is not None and oldest > cfg.status.max_sync_age:
        out["stale"] = (f"{len(pending)} file(s) waiting for upload, oldest for {human_age(oldest)}; last verified upload "
                        + (f"{human_age(last_age)} ago" if last_age is not None else "never"))
    out["summary"] = (f"s3://{cfg.sync.bucket}/{cfg.sync.prefix}: {len(pending)} file(s) waiting"
                      + (f" ({out['backlog_bytes'] / 2**20:,.1f} MiB, oldest {human_age(oldest)})" if pending else "")
                      + "; last verified upload " + (f"{human_age(last_age)} ago" if last_age is not None else "never"))
    return out

