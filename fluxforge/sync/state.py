"""Durable record of what is verified in S3: `<state_dir>/sync.sqlite`.

Why sqlite: one row per uploaded file, committed (synchronous=FULL) right after
the object was verified by HEAD, so a rerun uploads nothing new and a run
killed mid-way resumes with the files that have no row yet.  A row is keyed by
the file's *logical path* (its S3 key below the prefix), which does not change
when the local copy is deleted; size and mtime say whether the local file is
still the one that was uploaded (the ETL rewriting a part changes both).
"""
from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

DB_NAME = "sync.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploaded (
    logical     TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    algorithm   TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    part_size   INTEGER NOT NULL,
    covers      TEXT,
    uploaded_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class UploadRecord:
    logical: str
    size: int
    mtime_ns: int
    algorithm: str
    checksum: str
    part_size: int
    covers: list[str] | None


class UploadState:
    """Thin wrapper around the sqlite file; use from one thread."""

    def __init__(self, state_dir: Path):
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / DB_NAME
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(_SCHEMA)
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "UploadState":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, logical: str) -> UploadRecord | None:
        row = self.db.execute(
            "SELECT logical, size, mtime_ns, algorithm, checksum, part_size, covers FROM uploaded WHERE logical=?",
            (logical,)).fetchone()
        return _record(row) if row else None

    def is_current(self, logical: str, path: Path) -> bool:
        """True when `path` is exactly the file that was uploaded and verified as `logical`."""
        rec = self.get(logical)
        if rec is None:
            return False
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        return rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns

    def record(self, logical: str, st: os.stat_result, algorithm: str, checksum: str, part_size: int,
               covers: list[str] | None = None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO uploaded VALUES (?,?,?,?,?,?,?,?)",
            (logical, st.st_size, st.st_mtime_ns, algorithm, checksum, part_size,
             json.dumps(covers) if covers else None, datetime.now(timezone.utc).isoformat(timespec="seconds")))
        self.db.commit()

    def forget(self, logical: str) -> None:
        self.db.execute("DELETE FROM uploaded WHERE logical=?", (logical,))
        self.db.commit()

    def covers_done(self, logical: str) -> None:
        """The parts this merged file replaces are gone from S3: never delete those keys again."""
        self.db.execute("UPDATE uploaded SET covers=NULL WHERE logical=?", (logical,))
        self.db.commit()

    def with_covers(self) -> list[UploadRecord]:
        rows = self.db.execute(
            "SELECT logical, size, mtime_ns, algorithm, checksum, part_size, covers FROM uploaded WHERE covers IS NOT NULL")
        return [_record(r) for r in rows]

    def all(self) -> list[UploadRecord]:
        rows = self.db.execute("SELECT logical, size, mtime_ns, algorithm, checksum, part_size, covers FROM uploaded")
        return [_record(r) for r in rows]

    def __contains__(self, logical: str) -> bool:
        return self.db.execute("SELECT 1 FROM uploaded WHERE logical=?", (logical,)).fetchone() is not None


def _record(row: tuple) -> UploadRecord:
    return UploadRecord(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]) if row[6] else None)
