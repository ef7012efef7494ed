"""What is in this file or segment?  The facts behind `fluxforge inspect PATH`.

Why: an operator holding a segment directory (in any state) or a single
Parquet file -- bronze, hf features or bars -- should not need Python to learn
its schema, row count, time range, symbols and, for a segment, whether its
manifest still matches the files on disk.  Everything here reads only; a
corrupt or truncated file is reported as one clear line, never a traceback.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..bronze import journal
from ..bronze.schemas import CHANNEL_SCHEMAS, listed_channel_file
from ..fsio import sha256_file
from ..bronze.segments import MANIFEST, REASON, STATES, SegmentId

_PARTITION = re.compile(r"^(exchange|symbol|date|interval)=(.+)$")


class InspectError(Exception):
    """The path cannot be inspected (missing, unreadable, not a segment or data file)."""


def inspect_path(path: str | Path) -> dict[str, Any]:
    """Describe a segment directory, a Parquet file or an Arrow journal as plain data."""
    p = Path(path)
    if not p.exists():
        raise InspectError(f"{p}: no such file or directory")
    if p.is_dir():
        return inspect_segment(p)
    return inspect_file(p)


def inspect_file(path: Path) -> dict[str, Any]:
    """Schema, rows, time range and symbols of one `.parquet` or `.arrows` file."""
    if path.suffix == ".arrows":
        table, torn = read_journal(path)
        info: dict[str, Any] = {"kind": "journal", "path": str(path), "bytes": path.stat().st_size,
                                "torn_tail": torn}
    else:
        try:
            pf = pq.ParquetFile(path)
            table = pf.read()
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
            raise InspectError(f"{path}: not a readable Parquet file ({_first_line(e)})") from None
        meta = pf.metadata
        info = {"kind": "parquet", "path": str(path), "bytes": path.stat().st_size,
                "row_groups": meta.num_row_groups,
                "compression": _compression(meta)}
    info["rows"] = table.num_rows
    info["schema"] = [{"name": f.name, "type": str(f.type)} for f in table.schema]
    info["partition"] = {m[1]: m[2] for part in path.parts if (m := _PARTITION.match(part))}
    info["time_range"] = time_range(table)
    info["symbols"] = symbol_counts(table, info["partition"])
    if "kind" in table.column_names:  # a format-2 order book: how many snapshots and deltas
        counts = pc.value_counts(table.column("kind")).to_pylist()
        info["book_rows"] = {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: str(c["values"]))}
    return info


def read_journal(path: Path) -> tuple[pa.Table, bool]:
    """All complete batches of a channel journal (collector's reader); True if a torn tail was dropped."""
    schema = CHANNEL_SCHEMAS.get(path.stem)
    if schema is None:
        raise InspectError(f"{path}: not a channel journal (expected one of "
                           f"{', '.join(c + '.arrows' for c in CHANNEL_SCHEMAS)})")
    try:
        table, scan = journal.read_journal(path, schema)
    except (journal.JournalUnreadable, pa.ArrowInvalid, OSError) as e:
        raise InspectError(f"{path}: not a readable Arrow journal ({_first_line(e)})") from None
    return table, scan.torn_batches > 0


def time_range(table: pa.Table) -> dict[str, str] | None:
    """First and last event time as ISO-8601 UTC, from `timestamp` (ms or timestamp type) or `recv_ns`."""
    for name, unit in (("timestamp", "ms"), ("recv_ns", "ns")):
        if name not in table.column_names:
            continue
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            unit = col.type.unit
            col = col.cast(pa.int64())
        mm = pc.min_max(col)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        if lo is None:
            continue
        return {"column": name, "first": _iso(lo, unit), "last": _iso(hi, unit)}
    return None


def symbol_counts(table: pa.Table, partition: dict[str, str]) -> dict[str, int]:
    """Rows per `exchange:symbol` (from columns, else from hive partition names)."""
    cols = table.column_names
    if "symbol" in cols:
        keys = ["exchange", "symbol"] if "exchange" in cols else ["symbol"]
        grouped = table.group_by(keys).aggregate([([], "count_all")])
        out = {}
        for row in grouped.to_pylist():
            label = ":".join("*" if row[k] is None else str(row[k]) for k in keys)
            out[label] = row["count_all"]
        return dict(sorted(out.items()))
    if "symbol" in partition:
        label = ":".join(partition[k] for k in ("exchange", "symbol") if k in partition)
        return {label: table.num_rows}
    return {}


def inspect_segment(seg: Path) -> dict[str, Any]:
    """A segment directory: identity, state (its location), manifest check and each channel file."""
    if not SegmentId.is_segment_name(seg.name):
        raise InspectError(f"{seg}: not a segment directory (expected seg-<host>-<start>-<seq>)")
    sid = SegmentId.parse(seg.name)
    state = seg.parent.name if seg.parent.name in STATES else None
    info: dict[str, Any] = {
        "kind": "segment", "path": str(seg), "segment": sid.name, "host": sid.host, "seq": sid.seq,
        "started": sid.start_datetime.isoformat(), "state": state,
    }
    reason = seg / REASON
    if reason.is_file():
        info["failure_reason"] = reason.read_text(errors="replace").strip()
    files = sorted(p for p in seg.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix in (".parquet", ".arrows"))
    info["files"] = {}
    for f in files:
        try:
            info["files"][f.name] = inspect_file(f)
        except InspectError as e:
            info["files"][f.name] = {"error": str(e)}
    info["manifest"] = check_manifest(seg, info["files"])
    return info


def check_manifest(seg: Path, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Compare manifest.json with the files: rows and sha256 per channel."""
    mpath = seg / MANIFEST
    if not mpath.is_file():
        journals = any(name.endswith(".arrows") for name in files)
        return {"status": "absent (active journal)" if journals else "missing", "problems": []}
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as e:
        return {"status": "unreadable", "problems": [f"manifest.json: {_first_line(e)}"]}
    problems = []
    channels = manifest.get("channels") or {}
    for channel, entry in channels.items():
        try:
            fname = listed_channel_file(channel, entry)
        except ValueError as e:
            problems.append(f"manifest.json: {e}")
            continue
        fpath = seg / fname
        if not fpath.is_file():
            problems.append(f"{fname}: listed in manifest but missing")
            continue
        finfo = files.get(fname, {})
        if "rows" in entry and "rows" in finfo and entry["rows"] != finfo["rows"]:
            problems.append(f"{fname}: manifest says {entry['rows']} rows, file has {finfo['rows']}")
        if entry.get("sha256") and entry["sha256"] != sha256_file(fpath):
            problems.append(f"{fname}: sha256 differs from manifest")
    for fname in files:
        if fname.endswith(".parquet") and fname[: -len(".parquet")] not in channels:
            problems.append(f"{fname}: not listed in manifest")
    out = {k: manifest[k] for k in ("format_version", "recovered", "torn_batches_dropped") if k in manifest}
    out.update({"status": "ok" if not problems else "mismatch", "problems": problems})
    for key in ("started", "closed", "started_at", "closed_at"):
        if key in manifest:
            out[key] = manifest[key]
    return out




def _compression(meta: pq.FileMetaData) -> str | None:
    if meta.num_row_groups == 0 or meta.num_columns == 0:
        return None
    return meta.row_group(0).column(0).compression


def _iso(value: int, unit: str) -> str:
    seconds = value / {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def format_inspection(info: dict[str, Any]) -> str:
    """Human-readable text for `fluxforge inspect` (the JSON form is `info` itself)."""
    if info["kind"] == "segment":
        lines = [f"segment   {info['segment']}",
                 f"state     {info['state'] or '(not under a segments/<state>/ directory)'}",
                 f"host      {info['host']}   seq {info['seq']}   started {info['started']}"]
        m = info["manifest"]
        extra = "".join(f"  {k}={m[k]}" for k in ("recovered", "torn_batches_dropped") if k in m)
        lines.append(f"manifest  {m['status']}{extra}")
        lines += [f"          ! {p}" for p in m["problems"]]
        if "failure_reason" in info:
            lines.append(f"failed    {info['failure_reason']}")
        for name, f in info["files"].items():
            lines.append("")
            lines.append(f"== {name}")
            lines += (["   " + f["error"]] if "error" in f else _file_lines(f, indent="   "))
        if not info["files"]:
            lines.append("(no channel files)")
        return "\n".join(lines)
    return "\n".join(_file_lines(info))


def _file_lines(f: dict[str, Any], indent: str = "") -> list[str]:
    head = f"{f['kind']}  {f['rows']:,} rows  {f['bytes']:,} bytes"
    if f["kind"] == "parquet":
        head += f"  {f['row_groups']} row group(s)  {f['compression'] or ''}".rstrip()
    if f.get("torn_tail"):
        head += "  (torn tail skipped)"
    lines = [head]
    if f["partition"]:
        lines.append("partition " + " ".join(f"{k}={v}" for k, v in f["partition"].items()))
    tr = f["time_range"]
    lines.append(f"time      {tr['first']} .. {tr['last']}  ({tr['column']})" if tr else "time      (no rows)")
    if f["symbols"]:
        lines.append("symbols   " + ", ".join(f"{s} ({n:,})" for s, n in f["symbols"].items()))
    if f.get("book_rows"):
        lines.append("book rows " + ", ".join(f"{k} {n:,}" for k, n in f["book_rows"].items()))
    lines.append("schema")
    width = max((len(c["name"]) for c in f["schema"]), default=0)
    lines += [f"  {c['name']:<{width}}  {c['type']}" for c in f["schema"]]
    return [indent + line for line in lines]
