"""Find and read Daedalus's raw files: Parquet (flat or partitioned) and NDJSON segments.

Why a reader that never raises: an import runs over months of files from a system
that crashed, filled disks and was copied around; one truncated Parquet footer or
one garbage line must cost exactly that file or line, counted in the report, and
never the rest.  A file that breaks part-way keeps the rows read before the damage.

Each file yields (channel, table in the old schema of that channel) chunks, so a
50 MB segment is never held whole.  Partitioned trees may carry `exchange=` /
`symbol=` only in the path (Hive style): those fill a missing column.  Parquet files
of the old writer's generic schema (`type`, `method`, `data_json`: its ohlcv and bidask
records) are read row by row as the records they were, like NDJSON lines.
"""
from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .daedalus_map import conform
from .daedalus_coinbase import SequenceWatch
from .daedalus_ndjson import parse_line
from .daedalus_values import BadLine, UnmappedChannel
from .daedalus_schema import OLD_SCHEMAS
from .import_report import ImportReport

PARQUET_SUFFIXES = (".parquet",)
NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
CHUNK_ROWS = 65536


def is_source_file(path: Path) -> bool:
    return not path.name.startswith(".") and path.name.endswith(PARQUET_SUFFIXES + NDJSON_SUFFIXES)


def find_sources(sources: Iterable[str | Path]) -> list[Path]:
    """Every Daedalus data file under each SRC (a file or a directory tree), in path order.

    Raises FileNotFoundError for a SRC that does not exist."""
    found: dict[Path, None] = {}
    for src in map(Path, sources):
        if src.is_file():
            found[src.resolve()] = None
        elif src.is_dir():
            for p in sorted(src.rglob("*")):
                if p.is_file() and is_source_file(p) and not any(part.startswith(".") for part in p.relative_to(src).parts):
                    found[p.resolve()] = None
        else:
            raise FileNotFoundError(f"{src}: no such file or directory")
    return sorted(found)


def hive_values(path: Path) -> dict[str, str]:
    """`key=value` directory names on the path (exchange=, symbol=, year=, ...)."""
    return dict(part.split("=", 1) for part in path.parent.parts if "=" in part)


def parquet_channel(names: list[str]) -> str | None:
    """Which old channel a Parquet file's columns belong to (None: not a Daedalus raw table)."""
    cols = set(names)
    if {"bids", "asks"} & cols:
        return "orderbook"
    if "trade_id" in cols:
        return "trades"
    if {"bid_volume", "ask_volume", "last", "base_volume"} & cols:
        return "ticker"
    return None


_GENERIC_COLUMNS = ("collected_at", "capture_ts", "exchange", "symbol", "type", "method", "data_json")


def _generic_records(pf: pq.ParquetFile, path: Path) -> Iterator[tuple[int, dict | BadLine]]:
    """(row number, the record it was) of a generic-schema file; a `data_json` that is not JSON
    comes as a BadLine, counted like a bad NDJSON line."""
    fill = hive_values(path)
    present = [c for c in _GENERIC_COLUMNS if c in pf.schema_arrow.names]
    row_no = 0
    for batch in pf.iter_batches(batch_size=CHUNK_ROWS, columns=present):
        if "capture_ts" in present:  # any unit / zone -> µs since the epoch, as capture_us takes it
            i = present.index("capture_ts")
            batch = batch.set_column(i, "capture_ts", pc.cast(
                pc.cast(batch.column(i), pa.timestamp("us", tz="UTC"), safe=False), pa.int64()))
        for row in batch.to_pylist():
            row_no += 1
            for key, value in fill.items():
                if row.get(key) is None and key in ("exchange", "symbol"):
                    row[key] = value
            try:
                row["data"] = json.loads(row.pop("data_json") or "null")
            except ValueError as e:
                yield row_no, BadLine(f"data_json is not JSON ({str(e)[:60]})")
                continue
            yield row_no, row


def _read_parquet(path: Path, report: ImportReport, extra: Counter) -> Iterator[tuple[str, pa.Table]]:
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    channel = parquet_channel(names)
    if channel is None:
        if "data_json" in names:  # the old writer's fallback for channels it had no schema for
            yield from _record_chunks(path, report, extra, _generic_records(pf, path))
            return
        raise ValueError(f"not a Daedalus raw table (columns: {', '.join(names[:8])})")
    fill = hive_values(path)
    for batch in pf.iter_batches(batch_size=CHUNK_ROWS):
        yield channel, conform(channel, pa.Table.from_batches([batch]), fill)


def _chunk_tables(rows: dict[str, list[dict]]) -> Iterator[tuple[str, pa.Table]]:
    for channel, items in rows.items():
        if items:
            yield channel, pa.Table.from_pylist(items, schema=OLD_SCHEMAS[channel])


def _record_chunks(path: Path, report: ImportReport, extra: Counter,
                   records: Iterable[tuple[int, bytes | dict | BadLine]]) -> Iterator[tuple[str, pa.Table]]:
    """Old-schema chunks of numbered records (NDJSON lines or generic Parquet rows); each bad
    one is counted in `report` and skipped."""
    rows: dict[str, list[dict]] = {c: [] for c in OLD_SCHEMAS}
    pending = 0
    sequence = SequenceWatch()
    try:
        for line_no, line in records:
            try:
                if isinstance(line, BadLine):
                    raise line
                channel, new = parse_line(line, extra, sequence)
            except BadLine as e:
                report.bad_line(path, line_no, str(e))
                continue
            except UnmappedChannel as e:
                report.unmapped_channels[e.channel] += e.rows
                continue
            finally:
                rows["events"] += sequence.events
                sequence.events.clear()
            rows[channel].extend(new)
            pending += len(new)
            if pending >= CHUNK_ROWS:
                yield from _chunk_tables(rows)
                rows = {c: [] for c in OLD_SCHEMAS}
                pending = 0
    finally:  # a file cut off part-way (truncated gzip, I/O error): keep the records read before it
        yield from _chunk_tables(rows)


def _ndjson_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        for line_no, line in enumerate(fh, 1):
            if line.strip():
                yield line_no, line


def read_file(path: Path, report: ImportReport, extra: Counter) -> Iterator[tuple[str, pa.Table]]:
    """(channel, old-schema table) chunks of one file; every problem goes into `report`.

    `extra` counts NDJSON data keys with no bronze column (see daedalus_ndjson)."""
    if path.stat().st_size == 0:
        report.empty_files.append(str(path))
        return
    kept = 0
    try:
        chunks = _read_parquet(path, report, extra) if path.name.endswith(PARQUET_SUFFIXES) else \
            _record_chunks(path, report, extra, _ndjson_lines(path))
        for channel, table in chunks:
            kept += table.num_rows
            yield channel, table
    except (OSError, EOFError, ValueError, pa.ArrowException) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if kept:
            report.damaged_files.append((str(path), kept, reason))
        else:
            report.bad_files.append((str(path), reason))
