"""One `fluxforge backfill` run: check, list, scan, plan, run the units, record.

Order, and why:
1. S3 buckets are checked first (HEAD): unreachable S3, a missing bucket or
   refused credentials end the run with one line before anything is written;
2. the DEST's `_backfill.json` must hold the same fingerprint (options,
   sources, filters, version) or none: one prefix never mixes two variants;
3. segments are listed and selected by manifest time range, then scanned (on the
   executor: an S3 segment is fetched once into the worker cache) for their streams;
4. units without a done-marker run, a few of one host per task (plan.build_tasks);
   each failure is reported, the others go on;
5. `_backfill.json` is rewritten with the units done, so it says what the tree holds.
"""
from __future__ import annotations

import time
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..config import DEFAULT_MAX_GAP_MS, FeatureOptions, TradeOptions
from ..logs import get_logger
from ..sync.client import check_bucket
from .dest import Dest
from .executor import open_executor
from .location import Location
from .plan import Filters, build_tasks, build_units, fingerprint
from .source import list_local, list_s3
from .unit_job import JobContext, UnitResult, run_task, scan_segment

log = get_logger("fluxforge.backfill")


class BackfillMismatch(Exception):
    """DEST already holds a backfill made with other options/sources/filters."""


class NoSegments(Exception):
    """Nothing in SOURCE matches the filters."""


@dataclass
class BackfillRequest:
    sources: list[Location]
    dest: Location
    options: FeatureOptions
    filters: Filters = field(default_factory=Filters)
    engine: str = "local"
    workers: int = 1
    address: str | None = None
    cache: str = ""
    row_group_rows: int = 65536
    reorder_window: float = 5.0
    trades: TradeOptions = field(default_factory=TradeOptions)  # etl.trades, as the ETL service uses them
    symbol_overrides: dict = field(default_factory=dict)        # etl.symbol_overrides
    max_gap_ms: int = DEFAULT_MAX_GAP_MS                         # etl.max_gap_seconds


@dataclass
class BackfillReport:
    segments: int = 0
    units: int = 0
    already_done: int = 0
    done: list[UnitResult] = field(default_factory=list)  # per task
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (segment, reason)
    seconds: float = 0.0

    @property
    def books(self) -> int:
        return sum(r.books for r in self.done)

    @property
    def units_done(self) -> int:
        return sum(len(r.units) for r in self.done)


def backfill(req: BackfillRequest, progress: Any = None) -> BackfillReport:
    t0 = time.monotonic()
    s3_sources = [s for s in req.sources if s.is_s3]
    if s3_sources and len(req.sources) > 1:
        raise ValueError("an S3 SOURCE must be the only SOURCE")
    for loc in s3_sources + ([req.dest] if req.dest.is_s3 else []):
        check_bucket(loc.target())
    dest = Dest(req.dest)
    meta = fingerprint(req.options, [str(s) for s in req.sources], req.filters, __version__, req.reorder_window,
                       req.row_group_rows, req.trades, req.symbol_overrides, req.max_gap_ms)
    existing = dest.read_meta()
    if existing and existing.get("fingerprint") != meta["fingerprint"]:
        raise BackfillMismatch(f"{req.dest} holds a backfill with other options/sources/filters "
                               f"(fingerprint {existing.get('fingerprint')}, this run {meta['fingerprint']}): "
                               "write this variant to its own --out")
    report = BackfillReport()
    listing = (list_s3(s3_sources[0], req.filters.host_ok, req.filters.date_ok) if s3_sources
               else list_local([s.path for s in req.sources], req.filters.host_ok))
    report.skipped += listing.skipped
    segments = [r for r in listing.segments if req.filters.segment_ok(r, int(round(req.reorder_window * 1000)))]
    report.segments = len(segments)
    if not segments:
        raise NoSegments(f"no bronze segments found under {' '.join(map(str, req.sources))}"
                         + (" matching the filters" if req.filters.describe() != Filters().describe() else ""))
    dest.write_meta({**meta, "units_done": sorted((existing or {}).get("units_done", [])), "complete": False})
    remote = bool(req.address)
    ctx = JobContext(source=(s3_sources[0].without_credentials() if remote else s3_sources[0]) if s3_sources else None,
                     dest=req.dest.without_credentials() if remote else req.dest,
                     options=req.options, row_group_rows=req.row_group_rows,
                     reorder_ms=int(round(req.reorder_window * 1000)), cache=req.cache,
                     emit_range=req.filters.emit_range, fingerprint=meta["fingerprint"],
                     trades=req.trades, symbol_overrides=req.symbol_overrides, max_gap_ms=req.max_gap_ms)
    with open_executor(req.engine, req.workers, req.address) as ex:
        scans = dict(f.result() for f in [ex.submit(scan_segment, r, ctx) for r in segments])
        report.skipped += [(name, s.bad) for name, s in scans.items() if s.bad]
        units = build_units(segments, scans, req.filters)
        report.units = len(units)
        done_before = dest.done_units()
        todo = [u for u in units if u.id not in done_before]
        report.already_done = len(units) - len(todo)
        if progress is not None:
            progress.total = len(todo)
        futures = {ex.submit(run_task, t, ctx): t for t in build_tasks(todo, req.workers)}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                result = fut.result()
            except Exception as e:  # one task's failure never hides the others' results
                for u in task.units:
                    report.failed.append((u.id, f"{type(e).__name__}: {e}"))
                log.error("task_failed", units=[u.id for u in task.units], error=type(e).__name__, detail=str(e))
                continue
            report.done.append(result)
            if progress is not None:
                progress.advance(len(result.units), note=f"{report.books:,} snapshots")
    seen = set()
    for name, reason in (r for t in report.done for r in (t.skipped or [])):
        if name not in seen:
            seen.add(name)
            report.skipped.append((name, reason))
    all_done = sorted(dest.done_units() & {u.id for u in units})
    dest.write_meta({**meta, "units_done": all_done, "complete": len(all_done) == len(units)})
    report.seconds = time.monotonic() - t0
    return report
