"""Segment directories and their state machine (DESIGN decision 1).

A segment is a directory `seg-<host>-<utc start>-<seq>/` holding one file per
channel plus `manifest.json`.  Its *location* is its state:

    segments/active/ -> ready/ -> processing/ -> done/
                                        \\-> failed/ (+ reason.txt)

and each state change is exactly one rename(2) of the directory, made durable by
fsync of both parents.  Nothing else records state, so a crash can never leave
the record and the data disagreeing.

Why order by sequence, not start time: the start time is the wall clock, which
can step back (NTP after a cold boot without an RTC), so a later segment can carry
an earlier name.  The per-host `seq` only grows: it is one more than the highest
seq ever handed out, remembered in `segments/.seq` so that retention deleting
every old segment cannot make the numbers start again.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..fsio import atomic_write_bytes, durable_rename
from .schemas import CHANNEL_SCHEMAS, channel_file

STATES = ("active", "ready", "processing", "done", "failed")
MANIFEST = "manifest.json"
REASON = "reason.txt"
FLUSH_MARK = ".flushed"  # in active/: touched after each collector flush (SegmentStore.mark_flush)
LIVE_CHUNKS = "live_chunks.jsonl"  # the ETL's live chunk log, moved in when it claims the segment (etl/chunk_log.py)
SEQ_FILE = ".seq"
_NAME = re.compile(r"^seg-(?P<host>[A-Za-z0-9_.]+)-(?P<start>\d{8}T\d{6}Z)-(?P<seq>\d{6,})$")


@dataclass(frozen=True)
class SegmentId:
    """Parsed segment name; ordering is (host, seq) = processing order (never the wall clock)."""

    start: str  # YYYYmmddTHHMMSSZ (UTC)
    seq: int
    host: str

    @property
    def sort_key(self) -> tuple[str, int, str]:
        return (self.host, self.seq, self.start)

    def __lt__(self, other: "SegmentId") -> bool:
        return self.sort_key < other.sort_key

    def __le__(self, other: "SegmentId") -> bool:
        return self.sort_key <= other.sort_key

    def __gt__(self, other: "SegmentId") -> bool:
        return self.sort_key > other.sort_key

    def __ge__(self, other: "SegmentId") -> bool:
        return self.sort_key >= other.sort_key

    def precedes(self, other: "SegmentId") -> bool:
        """True if this segment came before `other` from the same host (other hosts: unordered)."""
        return self.host == other.host and self.seq < other.seq

    @property
    def name(self) -> str:
        return f"seg-{self.host}-{self.start}-{self.seq:06d}"

    @property
    def start_datetime(self) -> datetime:
        return datetime.strptime(self.start, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)

    @classmethod
    def new(cls, host: str, seq: int, when: datetime | None = None) -> "SegmentId":
        when = when or datetime.now(timezone.utc)
        return cls(start=when.strftime("%Y%m%dT%H%M%SZ"), seq=seq, host=host)

    @classmethod
    def parse(cls, name: str) -> "SegmentId":
        m = _NAME.match(name)
        if not m:
            raise ValueError(f"not a segment directory name: {name!r}")
        return cls(start=m["start"], seq=int(m["seq"]), host=m["host"])

    @classmethod
    def is_segment_name(cls, name: str) -> bool:
        return bool(_NAME.match(name))

    def __str__(self) -> str:
        return self.name


class SegmentStore:
    """The five state directories under `<data_dir>/segments`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def ensure(self) -> "SegmentStore":
        """Create the state directories and check they share one file system (see `check_one_filesystem`)."""
        for s in STATES:
            (self.root / s).mkdir(parents=True, exist_ok=True)
        self.check_one_filesystem()
        return self

    def check_one_filesystem(self) -> None:
        """Refuse state directories on another file system than `segments/` (e.g. a symlinked done/).

        Why at start: a state change is one rename(2), which cannot cross file
        systems (EXDEV); found only at the first move, it would crash-loop the
        service with a segment stuck half-way.  Exit 78: the operator must fix it.
        """
        dev = self.root.stat().st_dev
        other = [s for s in STATES if (self.root / s).stat().st_dev != dev]
        if other:
            raise ConfigError(
                f"data_dir: {', '.join(str(self.root / s) for s in other)} on another file system than "
                f"{self.root} (symlink?): segments move between states by rename(2), so data_dir must be "
                "one file system; mount the whole data_dir there instead")

    def dir(self, state: str) -> Path:
        if state not in STATES:
            raise ValueError(f"unknown segment state {state!r}")
        return self.root / state

    def list(self, state: str) -> list[Path]:
        """Segment directories in `state`, oldest first (hidden/temp names ignored)."""
        d = self.dir(state)
        if not d.is_dir():
            return []
        segs = [p for p in d.iterdir() if p.is_dir() and SegmentId.is_segment_name(p.name)]
        return sorted(segs, key=lambda p: SegmentId.parse(p.name))

    def path(self, state: str, seg: SegmentId | str) -> Path:
        return self.dir(state) / str(seg)

    def move(self, seg_dir: Path, state: str) -> Path:
        """One durable rename of the segment directory into `state`; returns the new path."""
        dst = self.dir(state) / seg_dir.name
        durable_rename(seg_dir, dst)
        return dst

    def mark_flush(self) -> None:
        """Touch active/.flushed: every channel's batches of one collector flush are in the journals.

        Why: the live ETL wakes on this (one inotify event per flush, etl/live_wake.py) instead of
        looking every poll interval, and reads each flush whole rather than a channel at a time.
        Best effort, never durable: only a wake-up depends on it (the ETL falls back to polling)."""
        try:
            (self.dir("active") / FLUSH_MARK).touch()
        except OSError:
            pass

    def clear_flush_mark(self) -> None:
        """Remove active/.flushed (the collector stopped: no flush will follow; active/ is left empty)."""
        try:
            (self.dir("active") / FLUSH_MARK).unlink(missing_ok=True)
        except OSError:
            pass

    def fail(self, seg_dir: Path, reason: str) -> Path:
        """Write reason.txt inside the segment, then move it to failed/ (nothing is deleted)."""
        atomic_write_bytes(seg_dir / REASON, (reason.rstrip() + "\n").encode())
        return self.move(seg_dir, "failed")

    def next_seq(self) -> int:
        """1 + the highest seq of any segment in any state or ever recorded (so names never repeat)."""
        best = self._recorded_seq()
        for s in STATES:
            for p in self.list(s):
                best = max(best, SegmentId.parse(p.name).seq)
        return best + 1

    def record_seq(self, seq: int) -> None:
        """Remember `seq` as handed out (durably, before the segment exists).

        Best effort: on a full disk the segment directories still give the floor."""
        if seq > self._recorded_seq():
            try:
                atomic_write_bytes(self.root / SEQ_FILE, f"{seq}\n".encode())
            except OSError:
                pass

    def _recorded_seq(self) -> int:
        try:
            return int((self.root / SEQ_FILE).read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            return 0  # damaged: the directories still give a floor


def segment_file_names() -> frozenset[str]:
    """Every file name a segment directory may hold: channel journals and Parquet files, manifest, reason,
    the ETL's live chunk log."""
    return frozenset([channel_file(c, f) for c in CHANNEL_SCHEMAS for f in (True, False)]
                     + [MANIFEST, REASON, LIVE_CHUNKS])


def closed_time(seg: Path) -> float:
    """When the segment was finished: manifest's `closed` time, else manifest.json's mtime, else the dir's."""
    mpath = seg / MANIFEST
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError):
        manifest = None
    if isinstance(manifest, dict):
        for key in ("closed", "closed_at", "closed_ns", "closed_ms"):
            value = manifest.get(key)
            parsed = _parse_time(value)
            if parsed is not None:
                return parsed
    try:
        return mpath.stat().st_mtime
    except OSError:
        return seg.stat().st_mtime


def _parse_time(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, (int, float)) and value > 0:
        for scale in (1, 1e3, 1e6, 1e9):  # s, ms, us, ns since the epoch
            if value / scale < 1e10:
                return value / scale
    return None
