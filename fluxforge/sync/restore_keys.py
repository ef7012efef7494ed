"""Which S3 keys `fluxforge sync --download` may turn into local files, and where.

Why: anyone who can PutObject below the prefix (one stolen Pi's key is enough
when a fleet shares credentials) chooses the key names a restore reads, and a
key is a path.  A restore therefore writes only keys that match the documented
layout (docs/sync.md, fluxforge.sync.layout):

    bronze/host=<host>/date=<YYYY-MM-DD>/<segment>/<segment file>
    features/<table>/<key>=<value>/.../<name>.parquet

and refuses, with a reason the command lists, anything else: empty, `.` or `..`
components, absolute keys, backslashes, control characters, folder markers
(keys ending in `/`).  As a last line of defence the resolved destination
(symlinks followed) must still lie inside `--to`.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..bronze.segments import SegmentId, segment_file_names
from .layout import bronze_prefix

_COMPONENT = re.compile(r"^[^\x00-\x1f\x7f/\\]+$")
_PARTITION = re.compile(r"^[a-z_][a-z0-9_]*=[^=]+$")
_TABLE = re.compile(r"^[a-z][a-z0-9_]*$")


class RefusedKey(ValueError):
    """A key that is not restored; str() is the reason."""


def _check_components(logical: str) -> list[str]:
    if not logical:
        raise RefusedKey("empty key below the prefix")
    if logical.endswith("/"):
        raise RefusedKey("folder marker (key ends with '/')")
    if logical.startswith("/"):
        raise RefusedKey("absolute key (starts with '/')")
    if "\\" in logical:
        raise RefusedKey("backslash in key")
    parts = logical.split("/")
    for p in parts:
        if p == "":
            raise RefusedKey("empty path component ('//')")
        if p in (".", ".."):
            raise RefusedKey(f"'{p}' path component")
        if not _COMPONENT.match(p):
            raise RefusedKey("control character in key")
    return parts


def _check_bronze(parts: list[str]) -> None:
    if len(parts) != 5:
        raise RefusedKey("bronze key is not bronze/host=<host>/date=<YYYY-MM-DD>/<segment>/<file>")
    try:
        sid = SegmentId.parse(parts[3])
    except ValueError:
        raise RefusedKey(f"not a segment name: {parts[3]!r}") from None
    if "/".join(parts[:4]) != bronze_prefix(sid):
        raise RefusedKey(f"host= or date= does not match segment {sid.name} (expected {bronze_prefix(sid)}/)")
    if parts[4] not in segment_file_names():
        raise RefusedKey(f"unknown segment file {parts[4]!r}")


def _check_features(parts: list[str]) -> None:
    if len(parts) < 3 or not _TABLE.match(parts[1]):
        raise RefusedKey("feature key is not features/<table>/<key>=<value>/.../<name>.parquet")
    for p in parts[2:-1]:
        if not _PARTITION.match(p):
            raise RefusedKey(f"bad partition component {p!r}")
    name = parts[-1]
    if name.startswith(".") or not name.endswith(".parquet"):
        raise RefusedKey(f"not a visible .parquet file: {name!r}")


def check_logical(logical: str) -> None:
    """Raise RefusedKey unless `logical` (a key below the prefix) follows the documented layout."""
    parts = _check_components(logical)
    if parts[0] == "bronze":
        _check_bronze(parts)
    elif parts[0] == "features":
        _check_features(parts)
    else:
        raise RefusedKey("outside the documented layout (neither bronze/ nor features/)")


def restore_path(dest: Path, logical: str) -> Path:
    """The local path a restore writes `logical` to; RefusedKey if it must not be written."""
    check_logical(logical)
    root = dest.resolve()
    out = root.joinpath(*logical.split("/"))
    if not out.resolve().is_relative_to(root):
        raise RefusedKey(f"resolves outside {root} (through a symlink?)")
    return out
