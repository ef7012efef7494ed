"""Recompute features from any directories of bronze segments (`fluxforge replay`).

Why it reuses `run_segment` with an in-memory engine bank: the output must be
exactly what the live service writes -- same parts, same names, same values --
so the only differences are where segments come from (any directories, nothing
is moved) and that kernel state lives in memory instead of a checkpoint.
A segment the service would send to failed/ is skipped with the same reason.
State is kept per host (one engine bank each, DESIGN decision 12): two hosts that
collect the same symbol are two streams, and one host's exchange-wide reconnect
never resets another host's symbols.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import DEFAULT_MAX_GAP_MS, FeatureOptions, TradeOptions
from ..logs import get_logger
from ..bronze.segments import SegmentId
from .bronze_reader import BadSegment
from .engines import EngineBank
from .segment_job import SegmentResult, run_segment

log = get_logger("fluxforge.replay")

# States whose segments are finished bronze (active/ is still a journal, failed/ is unusable).
REPLAYABLE_STATES = ("ready", "processing", "done")


def find_segments(sources: Iterable[str | Path]) -> list[Path]:
    """Segment directories under each source, in processing order, de-duplicated by name.

    A source may be a segment directory, a directory of segments (e.g. segments/done)
    or a segments root (its ready/, processing/ and done/ are searched).
    """
    found: dict[str, Path] = {}
    for src in map(Path, sources):
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: not a directory")
        if SegmentId.is_segment_name(src.name):
            candidates = [src]
        else:
            candidates = [p for p in src.iterdir() if p.is_dir() and SegmentId.is_segment_name(p.name)]
            for state in REPLAYABLE_STATES:
                sub = src / state
                if sub.is_dir():
                    candidates += [p for p in sub.iterdir() if p.is_dir() and SegmentId.is_segment_name(p.name)]
        for p in candidates:
            found.setdefault(p.name, p)
    return [found[n] for n in sorted(found, key=SegmentId.parse)]


@dataclass
class ReplaySummary:
    done: list[SegmentResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (segment, reason)

    @property
    def books(self) -> int:
        return sum(r.books for r in self.done)


class BankSpoiled(Exception):
    """A segment failed after it had fed the bank, and no snapshot was taken to undo that.

    Raised by `run_or_skip(..., rollback=False)`; `reason` is why the segment is skipped.
    The caller rebuilds the bank without the segment (backfill: reruns the task)."""

    def __init__(self, segment: str, reason: str):
        super().__init__(f"{segment}: {reason}")
        self.segment, self.reason = segment, reason


def run_or_skip(seg_dir: Path, bank: EngineBank, out_dir: Path, row_group_rows: int,
                rollback: bool = True, **job) -> tuple[SegmentResult | None, str]:
    """One segment through the segment job, or (None, reason) with the bank as before it.

    The rule replay and backfill share: a segment the service would send to failed/
    is skipped the same way; an error of the output side (OSError) stops the run.
    The undo is a snapshot of the bank before every segment; `rollback=False` takes
    none (it costs as much as a good part of the segment) and raises `BankSpoiled`
    instead when a failing segment had already fed the bank (one refused by its
    verification never has)."""
    before = bank.snapshot() if rollback else None
    handed = bank.handed_out
    try:
        return run_segment(seg_dir, bank, out_dir, row_group_rows, **job), ""
    except OSError:
        raise  # the output side failed (disk full, permissions): stop, never skip silently
    except Exception as e:  # the service would move it to failed/: skip it the same way
        reason = str(e) if isinstance(e, BadSegment) else f"processing error: {type(e).__name__}: {e}"
        log.warning("segment_skipped", segment=seg_dir.name, reason=reason)
        if before is not None:
            bank.restore(before)
        elif bank.handed_out != handed:
            raise BankSpoiled(seg_dir.name, reason) from e
        return None, reason


def replay(segments: list[Path], out_dir: Path, options: FeatureOptions, row_group_rows: int,
           on_segment: Callable[[Path, SegmentResult | None], None] | None = None,
           engine_class=None, reorder_window: float = 5.0,
           trade_options: TradeOptions | None = None, symbol_overrides: dict | None = None,
           max_gap_ms: int | None = DEFAULT_MAX_GAP_MS) -> ReplaySummary:
    banks: dict[str, EngineBank] = {}  # per host: streams are (host, exchange, symbol)
    summary = ReplaySummary()
    for seg_dir in segments:
        host = SegmentId.parse(seg_dir.name).host
        bank = banks.get(host)
        if bank is None:
            bank = banks[host] = EngineBank(options, engine_class, reorder_ms=int(round(reorder_window * 1000)),
                                            trade_options=trade_options, symbol_overrides=symbol_overrides,
                                            max_gap_ms=max_gap_ms)
        result, reason = run_or_skip(seg_dir, bank, Path(out_dir), row_group_rows)
        if result is None:
            summary.skipped.append((seg_dir.name, reason))
        else:
            summary.done.append(result)
        if on_segment is not None:
            on_segment(seg_dir, result)
    return summary
