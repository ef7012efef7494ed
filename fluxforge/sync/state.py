"""Durable record of what is verified in S3: `<state_dir>/sync.sqlite`.

Why sqlite: one row per uploaded file, committed (synchronous=FULL) right after
the object was verified by HEAD, so a rerun uploads nothing new and a run
killed mid-way resumes with the files that have no row yet.  A row is keyed by
the file's *logical path* (its S3 key below the prefix), which does not change
when the local copy is deleted; size and mtime say whether the local file is
still the one that was uploaded (the ETL rewriting a part changes both).

Bounded: a row is forgotten when FluxForge itself deletes the verified local
file (retention, `delete_after_upload`) or deletes the object from S3 (a part
superseded by compaction), so the table holds about one row per local file.
Rows of parts that compaction removed locally stay until the merged file that
covers them is verified and the parts are deleted from S3 (they are needed to
know those keys exist).  The time of the last verified upload is kept in `meta`,
so it survives the deletion of every row.

A corrupt file raises `SyncStateCorrupt` (one line with the fix) instead of a
traceback; callers then run retention against `NoUploads`, which counts nothing
as uploaded, so nothing is deleted that was not allowed without a sync record.
"""
from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

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
_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB


class SyncStateCorrupt(Exception):
    """`sync.sqlite` is not a readable database; str() says what to do."""

    def __init__(self, path: Path, detail: str):
        super().__init__(f"{path} is corrupt ({detail}): {corrupt_fix(path)}")
        self.path = path
        self.short = f"{path} is corrupt ({detail})"


def corrupt_fix(path: Path | str) -> str:
    return (f"move it aside (mv {path} {path}.corrupt, and its -wal/-shm files); the next sync starts a new one and uploads and verifies "
            "every local file again; until then retention deletes only what allow_unsynced_deletion permits")


def is_corrupt_error(e: BaseException) -> bool:
    return isinstance(e, sqlite3.DatabaseError) and (getattr(e, "sqlite_errorcode", 0) & 0xFF) in _CORRUPT_CODES


def check_integrity(db: sqlite3.Connection, path: Path) -> None:
    """Raise SyncStateCorrupt unless sqlite's quick_check passes (reads the whole, bounded, file)."""
    try:
        result = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.DatabaseError as e:
        if is_corrupt_error(e):
            raise SyncStateCorrupt(path, str(e)) from None
        raise
    if result != "ok":
        raise SyncStateCorrupt(path, result)


class NoUploads:
    """Stands in for the record when there is none (no sync yet, or a corrupt file): nothing is uploaded."""

    def __init__(self, reason: str | None = None):
        self.reason = reason  # why the real record is unusable (None: there is none yet)

    def is_current(self, logical: str, path: Path) -> bool:
        return False

    def forget_deleted(self, logicals: Iterable[str]) -> None:
        pass

    def __contains__(self, logical: str) -> bool:
        return False


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
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            check_integrity(self.db, self.path)
            self.db.execute(_SCHEMA)
            self.db.execute(_META)
            self.db.commit()
        except sqlite3.DatabaseError as e:
            self.db.close()
            if is_corrupt_error(e):
                raise SyncStateCorrupt(self.path, str(e)) from None
            raise
        except SyncStateCorrupt:
            self.db.close()
            raise

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
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.db.execute(
            "INSERT OR REPLACE INTO uploaded VALUES (?,?,?,?,?,?,?,?)",
            (logical, st.st_size, st.st_mtime_ns, algorithm, checksum, part_size,
             json.dumps(covers) if covers else None, now))
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('last_upload', ?)", (now,))
        self.db.commit()

    def forget_deleted(self, logicals: Iterable[str]) -> None:
        """The verified local copies of `logicals` were deleted on purpose: drop their rows, except
        a merged file's whose superseded parts are still to be deleted from S3."""
        self.db.executemany("DELETE FROM uploaded WHERE logical=? AND covers IS NULL", [(x,) for x in logicals])
        self.db.commit()

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM uploaded").fetchone()[0]

    def last_upload(self) -> str | None:
        """ISO time of the last verified upload (also after its row was forgotten)."""
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key='last_upload'").fetchone()
        except sqlite3.OperationalError:  # a file written before `meta` existed, opened read-only
            row = None
        return row[0] if row else self.db.execute("SELECT max(uploaded_at) FROM uploaded").fetchone()[0]

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


@contextmanager
def upload_state_or_nothing(state_dir: Path, log: Any) -> Iterator["UploadState | NoUploads"]:
    """The record; if it is corrupt, one error line and `NoUploads(reason)`, so retention still runs, safely."""
    try:
        state = UploadState(state_dir)
    except SyncStateCorrupt as e:
        log.error("sync_state_corrupt", error=str(e))
        yield NoUploads(str(e))
        return
    with state:
        yield state
