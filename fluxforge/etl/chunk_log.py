"""The chunks in which the live path fed a segment: what makes live == Parquet exact.

Why a log: the feature engines give the same rows for any chunking *except* for
rows that arrive older than what was already processed (dropped as late, and the
watermark that decides it moves with each chunk).  The live path can only feed a
segment in the pieces its journals were flushed in, so it writes down each piece
before publishing its rows -- the row count of every channel's journal after it,
one JSON line per chunk, fsync'd -- and the segment job feeds the finished segment
in exactly those pieces (`segment_job.run_segment`), then the rest as one piece.
Both run the same code on the same rows in the same order, so every published row
is the row that lands in Parquet, whatever arrived late.

Where: `state/etl/live/<segment>.chunks` while the segment is active (the ETL's own
directory: the collector owns the segment), moved into the segment directory as
`live_chunks.jsonl` when the ETL claims it, so `fluxforge replay` and `backfill`
of that segment later follow the same chunks and keep replay == live.
A log that does not match the segment (a power cut lost journal bytes the live
path had read) is ignored with a warning: the segment is then fed as if no log existed.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..bronze.segments import LIVE_CHUNKS
from ..fsio import atomic_path, fsync_dir
from ..logs import get_logger

log = get_logger("fluxforge.etl.live")

SEGMENT_FILE = LIVE_CHUNKS
CHANNELS = ("orderbook", "trades", "events", "ticker")  # a log without "ticker" (before ticker features) is ignored
Ends = dict[str, int]  # channel -> rows of its journal consumed after the chunk


def state_path(state_dir: str | Path, segment: str) -> Path:
    return Path(state_dir) / "etl" / "live" / f"{segment}.chunks"


def append(path: Path, ends: Ends) -> None:
    """Add one chunk (durably) before its rows are published."""
    _append_line(path, json.dumps({c: int(ends.get(c, 0)) for c in CHANNELS}, sort_keys=True))


def append_finished(path: Path) -> None:
    """Mark that the live path fed the whole segment and finished it (its last rows follow); the
    log may not exist yet (a segment that rotated before the live path fed any chunk of it)."""
    _append_line(path, '{"finished": true}')


def _append_line(path: Path, line: str) -> None:
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


def finished(path: Path) -> bool:
    """Whether the live path finished the segment (so it may have published all of its rows).

    A whole line that cannot be read (bit rot) may have been the mark: it counts as one, so that a
    restarted ETL sends the segment's rows again flagged as replays rather than a second time unflagged."""
    if not path.is_file():
        return False
    data = path.read_bytes()
    if b'"finished"' in data:
        return True
    for line in data.split(b"\n")[:-1]:  # (the part after the last newline is a torn append, never the mark)
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        # a chunk: channel row counts (all four, or a log from before ticker features); anything else is damage
        if not (isinstance(entry, dict) and entry and all(k in CHANNELS and type(v) is int for k, v in entry.items())):
            log.warning("live_chunks_damaged", path=str(path), line=line[:80].decode("utf-8", "replace"),
                        note="a line of the live log cannot be read; the segment's rows are sent again flagged replay")
            return True
    return False


def read(path: Path) -> list[Ends]:
    """The chunks of a log (a torn last line -- a crash mid-append -- is not a chunk; reading
    stops at the `finished` mark too, and at a damaged line: bytes that are not UTF-8 JSON)."""
    if not path.is_file():
        return []
    out: list[Ends] = []
    for line in path.read_bytes().splitlines():
        try:
            entry = json.loads(line)  # (bytes: not UTF-8 is a ValueError here, not in the whole file's decode)
            out.append({c: int(entry[c]) for c in CHANNELS})
        except (ValueError, KeyError, TypeError):
            break
    return out


def adopt(state_dir: str | Path, seg_dir: Path) -> None:
    """Move the live log of a segment the ETL just claimed into the segment directory."""
    src = state_path(state_dir, seg_dir.name)
    if not src.exists():
        return
    with atomic_path(seg_dir / SEGMENT_FILE) as tmp:
        shutil.copyfile(src, tmp)
    src.unlink()
    fsync_dir(src.parent)


def channel_rows(manifest: dict) -> Ends:
    """The rows of each channel a finished segment's manifest lists (0 for a channel it lacks)."""
    listed = manifest.get("channels") or {}
    return {c: int(listed.get(c, {}).get("rows", 0)) for c in CHANNELS}


def plan(seg_dir: Path, rows: Ends) -> list[Ends]:
    """The logged chunks of a finished segment, checked against its channels' row counts."""
    chunks = read(seg_dir / SEGMENT_FILE)
    prev = dict.fromkeys(CHANNELS, 0)
    for chunk in chunks:
        if any(chunk[c] < prev[c] or chunk[c] > rows.get(c, 0) for c in CHANNELS):
            log.warning("live_chunks_mismatch", segment=seg_dir.name, chunk=chunk, rows=rows,
                        note="the live log does not match the segment; fed without it")
            return []
        prev = chunk
    return chunks


def remove_stale(state_dir: str | Path, keep: set[str]) -> None:
    """Delete state logs of segments no longer active (e.g. failed before the ETL claimed them)."""
    d = Path(state_dir) / "etl" / "live"
    if d.is_dir():
        for p in d.glob("*.chunks"):  # (the `published` marker has no .chunks suffix)
            if p.stem not in keep:
                p.unlink(missing_ok=True)


def mark_published(state_dir: str | Path, segment: str) -> None:
    """Record that every row of `segment` reached the hub (after its segment job's rows did)."""
    with atomic_path(Path(state_dir) / "etl" / "live" / "published") as tmp:
        tmp.write_text(segment + "\n")


def last_published(state_dir: str | Path) -> str | None:
    p = Path(state_dir) / "etl" / "live" / "published"
    # (damaged bytes read as some other name: the segment is sent again, flagged replay, never lost)
    return p.read_bytes().decode(errors="replace").strip() or None if p.is_file() else None
