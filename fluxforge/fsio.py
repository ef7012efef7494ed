"""Durable file-system primitives: fsync'd writes and renames.

Why: every state change in FluxForge (segment moves, feature outputs, ETL
checkpoints, sync state) must survive a power cut on an SD card.  The rule is
always the same -- write to a temp name in the same directory, fsync the file,
rename over the final name, fsync the directory -- so it lives here once.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

# Errors of the disk rather than of one file: what they stop, time or an operator can mend.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})  # free space and it goes on
DISK_UNWRITABLE_ERRNOS = DISK_FULL_ERRNOS | {errno.EROFS}  # nothing can be written: stop, keep all
ENV_ERRNOS = DISK_UNWRITABLE_ERRNOS | {errno.EIO, errno.ENOMEM}  # retry later, never fail the input


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike) -> None:
    """fsync every file and directory below `path` (for a finished segment directory)."""
    root = Path(path)
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            fsync_file(Path(dirpath) / f)
        fsync_dir(dirpath)


def tmp_name(final: Path) -> Path:
    """A hidden temp name next to `final`; readers ignore names starting with '.'."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path to write; on success fsync it, rename to `final`, fsync the dir."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(final)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(final: str | os.PathLike, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(final: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(final, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def durable_rename(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """rename(2) then fsync both parent directories, so the move survives a power cut."""
    src, dst = Path(src), Path(dst)
    os.rename(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def syncfs(path: str | os.PathLike) -> bool:
    """syncfs(2) on the file system holding `path`: one call makes every written file and
    rename on it durable (errors reported since Linux 5.8).  Returns False where the call
    does not exist, so callers fall back to fsync per file and directory."""
    import ctypes

    from .libc import function
    fn = function("syncfs", (ctypes.c_int,))
    if fn is None:
        return False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if fn(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs: {os.strerror(err)}", str(path))
    finally:
        os.close(fd)
    return True


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks (manifest checksums: written and verified alike)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()
