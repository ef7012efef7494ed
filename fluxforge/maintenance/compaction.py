"""Compaction: merge the small `part-*.parquet` files of closed feature partitions.

Why: the ETL writes one part per segment per partition, so a day of 5-minute
segments is hundreds of tiny files that are slow to list, upload and query.
Once a partition can no longer change, its parts are merged into files near
`compaction.target_file_mb`, in segment order (which is time order).

A merged file is named `part-<first segment>--<last segment>.parquet` and its
Parquet key-value metadata (`fluxforge.compaction`) lists every original part
it covers, its row count and content digest.  Crash safety, step by step:

1. write `.compacting-<name>-<pid>` (not the ETL's temp pattern, which the ETL
   sweeps at start-up), fsync it, read it back and check the row count and
   the content digest (`TableDigest`) against the inputs;
2. write the partition's `.compaction.json` journal {output, inputs} (atomic);
3. rename the temp file to its final name, fsync the directory;
4. unlink the inputs, fsync, remove the journal.

A crash before 3 leaves only the inputs (the journal is dropped on the next
run); after 3 the verified output exists and the next run finishes step 4 from
the journal.  So no row is ever lost, and duplicates are visible at most until
the next run.

A part that cannot be read (a truncated or corrupt file: bit rot on an SD card) is
never merged or deleted: it ends a run of parts in planning (its footer unreadable)
or fails its merge (its data unreadable), is listed in the report with the error,
and every other merge goes on -- one bad file must not stop compaction for good.
Only a full or read-only disk stops the run (the inputs are kept either way).

Only partitions dated before `closed_before()` are touched: the
ETL may still write any date on or after the start of a pending segment, and
(through its reorder window, carried across segments) a little before it, so a
pending segment started at t keeps dates from (t - reorder_window - 1 h) open.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import Config
from ..fsio import DISK_UNWRITABLE_ERRNOS, atomic_write_json, fsync_dir, fsync_file
from ..logs import get_logger
from ..bronze.segments import SegmentId, SegmentStore
from ..etl.naming import part_name, part_segments
from .tabledigest import TableDigest

JOURNAL = ".compaction.json"
TMP_PREFIX = ".compacting-"
META_KEY = b"fluxforge.compaction"
SORT_COLUMN = "timestamp"
SMALL_FRACTION = 0.75  # files below this fraction of the target are merge candidates
ROW_GROUP_BYTES = 16 * 1024 * 1024  # decoded size cap of a merged row group: readers on a 1 GB Pi
READ_BATCH_ROWS = 16384
_PENDING_STATES = ("active", "ready", "processing")
_CARRY_MARGIN = timedelta(hours=1)  # exchange/receive clock skew on top of the ETL reorder window

log = get_logger("fluxforge.compaction")


class CompactionError(Exception):
    """A merged file failed verification; its inputs were left untouched."""


@dataclass
class MergeGroup:
    partition: Path
    inputs: list[Path]
    bytes: int

    @property
    def output(self) -> Path:
        first = part_segments(self.inputs[0])[0]
        last = part_segments(self.inputs[-1])[-1]
        return self.partition / part_name(first, last)


@dataclass
class CompactionReport:
    partitions: int = 0
    groups: int = 0
    files_in: int = 0
    files_out: int = 0
    rows: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    recovered: int = 0
    plan: list[MergeGroup] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # part file -> error: left as it is
    failed: list[tuple[str, str]] = field(default_factory=list)  # (merged file not made, error): inputs kept


def closed_before(cfg: Config, today: date | None = None) -> date:
    """Partitions dated strictly before this date are closed (never written again by the ETL)."""
    today = today or datetime.now(timezone.utc).date()
    cutoff = today - timedelta(days=cfg.compaction.min_age_days - 1)
    store = SegmentStore(cfg.segments_dir)
    for state in _PENDING_STATES:
        for seg in store.list(state):
            start = SegmentId.parse(seg.name).start_datetime
            reach = start - timedelta(seconds=cfg.etl.reorder_window) - _CARRY_MARGIN
            cutoff = min(cutoff, reach.date())
    return cutoff


def iter_partitions(features_dir: Path, before: date) -> Iterator[tuple[Path, date]]:
    """Every `.../date=YYYY-MM-DD` directory below `features_dir` dated before `before`."""
    for dirpath, dirnames, _files in os.walk(features_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        name = os.path.basename(dirpath)
        if name.startswith("date="):
            try:
                d = date.fromisoformat(name[5:])
            except ValueError:
                continue
            if d < before:
                yield Path(dirpath), d


def list_parts(partition: Path) -> list[Path]:
    """The partition's part files in segment order; foreign names are skipped."""
    parts = []
    names = (n for n in os.listdir(partition) if n.startswith("part-") and n.endswith(".parquet"))  # glob's 1/3
    for p in map(partition.joinpath, names):
        try:
            key = SegmentId.parse(part_segments(p)[0])
        except ValueError:
            log.warning("compaction_foreign_file_skipped", path=str(p))
            continue
        parts.append((key, p))
    return [p for _k, p in sorted(parts)]


def plan_partition(partition: Path, target_bytes: int, unreadable: dict[str, str] | None = None) -> list[MergeGroup]:
    """Runs of consecutive small parts with one schema, each run filling up to the target size.
    A part whose footer cannot be read ends a run, is merged with nothing and goes into `unreadable`
    (a merged file: nothing of the partition is merged)."""
    groups: list[MergeGroup] = []
    run: list[Path] = []
    run_bytes = 0
    run_schema: pa.Schema | None = None

    def close_run() -> None:
        if len(run) >= 2:
            groups.append(MergeGroup(partition, list(run), run_bytes))
        run.clear()

    parts = list_parts(partition)
    if len(parts) < 2:
        return []  # nothing to merge (a day compacted earlier): no footer read, however long the history
    bad: dict[Path, str] = {}
    merged_covers = {c for p in parts if "--" in p.name for c in _footer(p, covered_parts, bad) or ()}
    # a merged file that cannot be read: which parts it holds is unknown, so a part the ETL wrote again
    # after it cannot be told from a new one -- nothing of the partition is merged
    for p in parts if not bad else ():
        if "--" not in p.name and p.name in merged_covers:
            # The ETL wrote a part again after it was merged (a redo): merging it would duplicate rows.
            log.error("compaction_part_rewritten_after_merge", partition=str(partition), part=p.name,
                      hint="rows of this segment are in the merged file too; inspect before removing either")
            close_run()
            run_bytes, run_schema = 0, None
            continue
        size = p.stat().st_size
        schema = None if size >= SMALL_FRACTION * target_bytes or p in bad else \
            _footer(p, lambda q: pq.read_schema(q).remove_metadata(), bad)
        if schema is None:  # large enough as it is, or unreadable: a run ends here
            close_run()
            run_bytes, run_schema = 0, None
            continue
        if run and (run_bytes + size > target_bytes or not schema.equals(run_schema)):
            close_run()
            run_bytes = 0
        run.append(p)
        run_bytes += size
        run_schema = schema
    close_run()
    for p, error in bad.items():
        log.error("compaction_unreadable_part", path=str(p), error=error,
                  hint="left as it is and never merged; `fluxforge inspect` it, recompute its segment with "
                       "`fluxforge replay` and move the file away")
        if unreadable is not None:
            unreadable[str(p)] = error
    return groups


def _footer(path: Path, read, bad: dict[Path, str]):
    """read(path), or None with the error in `bad` when the file cannot be read as Parquet."""
    try:
        return read(path)
    except (pa.ArrowInvalid, OSError) as e:
        bad[path] = f"{type(e).__name__}: {e}"
        return None


def covered_parts(path: Path) -> list[str]:
    """Names of the original ETL parts a file stands for (itself for an unmerged part)."""
    meta = compaction_metadata(path)
    return meta["covers"] if meta else [path.name]


def compaction_metadata(path: Path) -> dict | None:
    """The `fluxforge.compaction` footer entry of a merged file (None for an ETL part)."""
    meta = pq.read_metadata(path).metadata or {}
    return json.loads(meta[META_KEY]) if META_KEY in meta else None


def _time_ordered(inputs: list[Path]) -> bool:
    """True when the inputs, concatenated in order, are sorted by SORT_COLUMN."""
    last = None
    for p in inputs:
        if SORT_COLUMN not in pq.read_schema(p).names:
            return True  # nothing to keep sorted by: file order is the order
        col = pq.read_table(p, columns=[SORT_COLUMN]).column(0)
        if len(col) == 0:
            continue
        values = col.cast(pa.int64()).to_numpy()
        if (values[1:] < values[:-1]).any() or (last is not None and values[0] < last):
            return False
        last = values[-1]
    return True


def _input_batches(group: MergeGroup, ordered: bool) -> Iterator[pa.RecordBatch]:
    if ordered:
        for p in group.inputs:
            yield from pq.ParquetFile(p).iter_batches(batch_size=READ_BATCH_ROWS)
        return
    table = pa.concat_tables(pq.read_table(p) for p in group.inputs).sort_by(SORT_COLUMN)
    yield from table.to_batches(max_chunksize=65536)


def group_rows(inputs: list[Path], row_group_rows: int) -> int:
    """Rows per merged row group: `etl.row_group_rows`, fewer for wide rows (<= ROW_GROUP_BYTES decoded)."""
    meta = pq.read_metadata(inputs[0])
    rows = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    decoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if not rows or not decoded:
        return row_group_rows
    return max(1024, min(row_group_rows, int(ROW_GROUP_BYTES * rows / decoded)))


def merge_group(group: MergeGroup, row_group_rows: int) -> tuple[int, int]:
    """Write, verify and install one merged file; returns (rows, bytes out)."""
    output = group.output
    row_group_rows = group_rows(group.inputs, row_group_rows)
    schema = pq.read_schema(group.inputs[0]).remove_metadata()
    covers = [c for p in group.inputs for c in covered_parts(p)]
    ordered = _time_ordered(group.inputs)
    tmp = output.with_name(f"{TMP_PREFIX}{output.name}-{os.getpid()}")
    digest_in = TableDigest()
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            pending: list[pa.RecordBatch] = []  # small parts are buffered into full row groups
            pending_rows = 0
            for batch in _input_batches(group, ordered):
                batch = pa.RecordBatch.from_arrays(batch.columns, schema=schema)
                digest_in.update(batch)
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows >= row_group_rows:
                    writer.write_table(pa.Table.from_batches(pending), row_group_size=row_group_rows)
                    pending, pending_rows = [], 0
            if pending:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=row_group_rows)
            want = digest_in.hexdigest()
            writer.add_key_value_metadata({META_KEY.decode(): json.dumps(
                {"covers": covers, "inputs": [p.name for p in group.inputs], "rows": digest_in.rows, "digest": want})})
        fsync_file(tmp)
        reader = pq.ParquetFile(tmp)
        got = TableDigest().update_all(reader.iter_batches(batch_size=READ_BATCH_ROWS))
        if reader.metadata.num_rows != digest_in.rows or got.rows != digest_in.rows or got.hexdigest() != want:
            raise CompactionError(f"{output}: merged file does not match its {len(group.inputs)} inputs "
                                  f"(rows {got.rows} vs {digest_in.rows}); inputs kept")
        atomic_write_json(group.partition / JOURNAL, {"output": output.name, "inputs": [p.name for p in group.inputs]})
        os.replace(tmp, output)
        fsync_dir(group.partition)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _finish(group.partition, [p.name for p in group.inputs])
    return digest_in.rows, output.stat().st_size


def _merge_failed(report: CompactionReport, group: MergeGroup, error: BaseException) -> None:
    """A merge that failed on its inputs (or its verification): inputs kept, the unreadable ones named."""
    for p in group.inputs:
        try:
            for _batch in pq.ParquetFile(p).iter_batches(batch_size=READ_BATCH_ROWS):
                pass
        except (pa.ArrowException, OSError) as e:
            report.unreadable[str(p)] = f"{type(e).__name__}: {e}"
    why = f"{type(error).__name__}: {error}"
    report.failed.append((str(group.output), why))
    log.error("compaction_merge_failed", output=str(group.output), inputs=len(group.inputs), error=why,
              unreadable=[str(p) for p in group.inputs if str(p) in report.unreadable],
              note="inputs kept as they are; the other merges go on")


def _finish(partition: Path, inputs: list[str]) -> None:
    for name in inputs:
        (partition / name).unlink(missing_ok=True)
    fsync_dir(partition)
    (partition / JOURNAL).unlink(missing_ok=True)
    fsync_dir(partition)


def recover_partition(partition: Path) -> bool:
    """Finish or roll back an interrupted merge; drop stale temp files.  True if a journal was found."""
    hidden = [n for n in os.listdir(partition) if n.startswith(".")]  # one listing; most days have none
    for name in hidden:
        if name.startswith((TMP_PREFIX, f".{JOURNAL}.tmp-")):  # temps of a killed run
            (partition / name).unlink(missing_ok=True)
    journal = partition / JOURNAL
    if JOURNAL not in hidden:
        return False
    try:
        entry = json.loads(journal.read_text())
        output, inputs = partition / entry["output"], list(entry["inputs"])
    except (ValueError, KeyError, TypeError):
        journal.unlink()  # torn journal: written before the rename, so the inputs are intact
        fsync_dir(partition)
        return True
    if output.exists():
        log.info("compaction_resumed", partition=str(partition), output=output.name, inputs=len(inputs))
        _finish(partition, inputs)
    else:
        journal.unlink()
        fsync_dir(partition)
    return True


def compact(cfg: Config, dry_run: bool = False, today: date | None = None, progress=None) -> CompactionReport:
    """Plan and (unless dry_run) run every merge in every closed partition."""
    report = CompactionReport()
    target = int(cfg.compaction.target_file_mb * 1024 * 1024)
    before = closed_before(cfg, today)
    if not cfg.features_dir.is_dir():
        return report
    for partition, _d in iter_partitions(cfg.features_dir, before):
        report.partitions += 1
        if dry_run and (partition / JOURNAL).exists():
            continue  # an interrupted merge: the real run finishes it first
        if not dry_run and recover_partition(partition):
            report.recovered += 1
        report.plan.extend(plan_partition(partition, target, report.unreadable))
    if progress is not None:
        progress.total = sum(g.bytes for g in report.plan)
    for group in report.plan:
        if not dry_run:
            try:
                rows, size = merge_group(group, cfg.etl.row_group_rows)
            except OSError as e:
                if e.errno in DISK_UNWRITABLE_ERRNOS:
                    raise  # the inputs are kept; with room (or a writable disk) again the next run goes on
                _merge_failed(report, group, e)
                continue
            except (pa.ArrowException, CompactionError) as e:
                _merge_failed(report, group, e)
                continue
            finally:
                if progress is not None:
                    progress.advance(group.bytes, note=group.partition.name)
            report.rows += rows
            report.bytes_out += size
            report.files_out += 1
            log.debug("partition_compacted", output=str(group.output), inputs=len(group.inputs), rows=rows)
        report.groups += 1  # merges made (planned, on a dry run)
        report.files_in += len(group.inputs)
        report.bytes_in += group.bytes
    return report
