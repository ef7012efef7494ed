"""Bronze files whose bytes are no longer those the collector wrote: never shipped as a backup.

Why before the upload: sync's verification proves that S3 holds the bytes on disk, not that
those bytes are the ones the collector finished.  A file damaged on the card -- bit rot while
S3 was unreachable for weeks, the files waiting in the backlog -- would be uploaded, verified,
and its local copy freed by retention: the only backup of the source data would hold the damage
and nothing would say so.  Every finished segment's manifest records each data file's size and
sha256 (bronze/finish.py); a file that no longer matches them is not uploaded, stays on disk
(retention frees only verified copies), keeps its segment's manifest out of the bucket (a
manifest there means a complete segment) and is named by every run until an operator acts.
A segment whose manifest cannot be read is shipped as it is: there is nothing to check against,
and the ETL refuses such a segment itself.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..bronze.finish import file_mismatch, read_manifest
from ..bronze.schemas import CHANNEL_SCHEMAS, listed_channel_file
from .layout import LocalFile


def recorded(seg_dir: Path) -> dict[str, dict]:
    """{file name: its manifest entry} of a finished segment ({} when the manifest is unreadable)."""
    try:
        channels = read_manifest(seg_dir).get("channels") or {}
        return {listed_channel_file(ch, entry): entry for ch, entry in channels.items()
                if ch in CHANNEL_SCHEMAS and isinstance(entry, dict)}
    except (OSError, ValueError, AttributeError):
        return {}


def mismatch(path: Path, entry: dict) -> str | None:
    """Why the file is not the one its manifest entry describes (None when it is, or unknown)."""
    try:
        return file_mismatch(path, entry)
    except FileNotFoundError:
        return None  # moved away since the plan: the uploader skips it too
    except OSError as e:  # EIO: the card
        return f"cannot be read ({e})"
    except (TypeError, ValueError):
        return None  # a manifest entry that is not numbers: nothing to check against


def damaged(files: list[LocalFile], workers: int) -> dict[LocalFile, str]:
    """The bronze data files among `files` that no longer match their segment's manifest, and why."""
    checks: list[tuple[LocalFile, dict]] = []
    entries: dict[Path, dict[str, dict]] = {}
    for f in files:
        if f.segment is None or f.is_manifest:
            continue
        seg_dir = f.path.parent
        if seg_dir not in entries:
            entries[seg_dir] = recorded(seg_dir)
        entry = entries[seg_dir].get(f.path.name)
        if entry is not None:
            checks.append((f, entry))
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="bronze-check") as pool:  # hashlib frees the GIL
        found = pool.map(lambda c: mismatch(c[0].path, c[1]), checks)
        return {f: why for (f, _entry), why in zip(checks, found) if why}
