"""What a backfill worker runs: scan one segment's streams, or run one unit (a stream) to its done-marker.

Why these are plain module-level functions of picklable arguments: the same
callables go to a local process pool and to Dask workers on other machines
(`Executor.submit`), and a worker needs nothing but the installed package, the
bronze (local or S3) and the destination.  A unit is a replay restricted to one
(host, exchange, symbol): `run_or_skip` + `run_segment(keys=...)`, the very code
`fluxforge replay` runs, with its own engine state from the unit's first segment
(a task runs a few units of one host on one bank, each stream keyed apart).
Unlike replay it snapshots no engine state before each segment: see `_replay_task`.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..bronze import schemas as bronze
from ..config import DEFAULT_MAX_GAP_MS, FeatureOptions, TradeOptions
from ..etl.bronze_reader import BadSegment
from ..etl.engines import EngineBank
from ..etl.replay import BankSpoiled, run_or_skip
from .dest import Dest
from .fetch import cached_segment
from .location import Location
from .plan import SegmentStreams, Task, Unit
from .source import SegmentRef


@dataclass(frozen=True)
class JobContext:
    """Everything a worker needs besides the unit itself."""

    source: Location | None  # S3 source (None: segments are local paths)
    dest: Location
    options: FeatureOptions
    row_group_rows: int
    reorder_ms: int
    cache: str
    emit_range: tuple[int | None, int | None] | None
    fingerprint: str
    trades: TradeOptions = field(default_factory=TradeOptions)  # etl.trades, etl.symbol_overrides, etl.max_gap_seconds: the engine
    symbol_overrides: dict | None = None   # bank is built as the ETL service builds it
    max_gap_ms: int = DEFAULT_MAX_GAP_MS


@dataclass
class UnitResult:
    """What one task did (its units share the counts)."""

    units: list[str]
    segments: int = 0
    books: int = 0
    files: int = 0
    skipped: list[tuple[str, str]] | None = None
    seconds: float = 0.0
    worker: str = ""


def _segment_dir(ref: SegmentRef, ctx: JobContext) -> Path:
    if ref.local is not None:
        return Path(ref.local)
    assert ctx.source is not None
    src = ctx.source
    return cached_segment(ref, src.target(), Path(ctx.cache) / "segments", src.s3.max_attempts)


def _channel_path(seg_dir: Path, manifest: dict, channel: str) -> Path | None:
    entry = (manifest.get("channels") or {}).get(channel)
    if entry is None:
        return None
    return seg_dir / ((entry.get("file") if isinstance(entry, dict) else None) or bronze.channel_file(channel, True))


def scan_segment(ref: SegmentRef, ctx: JobContext) -> tuple[str, SegmentStreams]:
    """(segment, its streams) from the exchange/symbol columns of the channels the ETL reads."""
    try:
        seg_dir = _segment_dir(ref, ctx)
        manifest = ref.manifest if isinstance(ref.manifest, dict) else None
        if manifest is None:
            raise BadSegment("manifest.json is missing or not valid JSON")
        keys: set[tuple[str, str]] = set()
        wide: set[str] = set()
        for channel in ("orderbook", "trades", "events"):
            path = _channel_path(seg_dir, manifest, channel)
            if path is None:
                continue
            cols = ["exchange", "symbol"] + (["event"] if channel == "events" else [])
            t = pq.read_table(path, columns=cols, use_threads=False)
            if channel == "events":
                t = t.filter(pc.is_in(t.column("event"), value_set=pa.array(sorted(bronze.RESET_EVENTS))))
                wide |= set(t.filter(pc.is_null(t.column("symbol"))).column("exchange").to_pylist())
                t = t.filter(pc.is_valid(t.column("symbol")))
            pairs = t.select(["exchange", "symbol"]).group_by(["exchange", "symbol"]).aggregate([])
            keys |= set(zip(pairs.column("exchange").to_pylist(), pairs.column("symbol").to_pylist()))
        return ref.name, SegmentStreams(frozenset(keys), frozenset(wide))
    except BadSegment as e:
        return ref.name, SegmentStreams(bad=str(e))
    except (pa.ArrowException, OSError) as e:
        if ref.local is None and isinstance(e, OSError) and not isinstance(e, pa.ArrowException):
            raise  # the worker's cache disk failed: not the segment's fault
        return ref.name, SegmentStreams(bad=f"unreadable: {e}")


def _unit_of(rel: str, units: list[Unit]) -> str:
    """The unit a part belongs to, from its partition path (…/exchange=X/symbol=Y/…)."""
    for u in units:
        if u.id.split("/", 1)[1] + "/" in rel:
            return u.id
    raise ValueError(f"{rel}: written for no unit of the task")


def _replay_task(task: Task, ctx: JobContext, root: Path, out: UnitResult) -> list[Path]:
    """The task's segments through one bank, no per-segment snapshot (a rerun of a unit starts
    it over, so nothing needs one); a segment that fails after feeding the bank restarts the
    task without it -- the state replay's snapshot-and-restore leaves, so the same files."""
    bad: dict[str, str] = {}  # segment -> why it is skipped, learnt by earlier attempts
    while True:
        bank = EngineBank(ctx.options, reorder_ms=ctx.reorder_ms, trade_options=ctx.trades,
                          symbol_overrides=ctx.symbol_overrides, max_gap_ms=ctx.max_gap_ms)
        files: list[Path] = []
        out.segments = out.books = 0
        try:
            for ref in task.segments:
                if ref.name in bad:
                    continue
                try:
                    seg_dir = _segment_dir(ref, ctx)
                except BadSegment as e:  # corrupt in S3: what replay does with a corrupt local segment
                    bad[ref.name] = str(e)
                    continue
                result, reason = run_or_skip(seg_dir, bank, root, ctx.row_group_rows, rollback=False,
                                             keys=task.keys, emit_range=ctx.emit_range)
                if result is None:
                    bad[ref.name] = reason
                    continue
                out.segments += 1
                out.books += result.books
                files += result.files
        except BankSpoiled as e:
            bad[e.segment] = e.reason
            continue
        out.skipped = [(ref.name, bad[ref.name]) for ref in task.segments if ref.name in bad]
        return files


def run_task(task: Task, ctx: JobContext) -> UnitResult:
    """Replay a task's streams through their segments, publish the parts, then one done-marker per unit."""
    t0 = time.monotonic()
    dest = Dest(ctx.dest)
    root = dest.work_root(Path(ctx.cache))
    out = UnitResult([u.id for u in task.units], skipped=[], worker=f"{os.uname().nodename}:{os.getpid()}")
    try:
        files = _replay_task(task, ctx, root, out)
        out.files = len(files)
        out.seconds = time.monotonic() - t0
        parts: dict[str, list[str]] = {u.id: [] for u in task.units}
        for f in files:
            rel = f.relative_to(root).as_posix()
            parts[_unit_of(rel, task.units)].append(rel)
        markers = {u.id: {"unit": u.id, "fingerprint": ctx.fingerprint, "task_units": out.units,
                          "task_segments": out.segments, "task_books": out.books,
                          "files": sorted(parts[u.id]), "skipped": out.skipped} for u in task.units}
        dest.publish(root, files, markers)
    finally:
        if ctx.dest.is_s3 and root.exists():
            shutil.rmtree(root, ignore_errors=True)
    return out
