"""The ETL state machine around `run_segment`: claim, process, checkpoint, done/failed.

Order of effects for one segment (DESIGN decision 5, exactly once by construction):

    ready/X --rename--> processing/X
    outputs: temp + fsync + rename (names from X, so a redo overwrites)
    checkpoint (atomic) with last_segment = X
    processing/X --rename--> done/X

Segments are taken in per-host sequence order (never by the wall-clock start in
their names: the clock can step back).  A segment that comes *before* the
checkpoint's (an operator moved a fixed failed/ segment back, or restored old
bronze into ready/) would only feed rows older than the kernels' state, all
dropped as late: it goes to failed/ with a reason naming `fluxforge replay`
instead of being "processed" into nothing.

On start, a segment found in processing/ is finished (if the checkpoint already
includes it) or redone from the checkpoint.  A segment that cannot be read goes to
failed/ with reason.txt, the engines are restored to the checkpoint and the next
segment is processed.  Environmental errors (disk full, I/O error) leave the
segment in processing/ to be retried; they are not the data's fault.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_MAX_GAP_MS, Config, FeatureOptions, TradeOptions
from ..fsio import DISK_FULL_ERRNOS, ENV_ERRNOS
from ..logs import get_logger
from ..bronze.segments import SegmentId, SegmentStore
from . import chunk_log
from .bronze_reader import BadSegment
from .checkpoint import Checkpoint, CheckpointStore, CheckpointUnreadable
from .engines import EngineBank
from .hive_writer import remove_stale_temps
from .segment_job import SegmentResult, run_segment

log = get_logger("fluxforge.etl")


OLDER_THAN_CHECKPOINT = "older than the checkpoint: use `fluxforge replay`"


class RetryLater(Exception):
    """An environmental failure (disk full, I/O error): the segment stays in processing/."""

    def __init__(self, message: str, disk_full: bool = False):
        super().__init__(message)
        self.disk_full = disk_full

    @classmethod
    def from_oserror(cls, what: str, e: OSError) -> "RetryLater":
        return cls(f"{what}: {e}", disk_full=e.errno in DISK_FULL_ERRNOS)


@dataclass
class Outcome:
    segment: str
    state: str  # done | failed
    result: SegmentResult | None = None
    reason: str | None = None


class EtlRunner:
    """Processes segments of one SegmentStore into one features tree, checkpointing in state_dir."""

    def __init__(self, segments_dir: Path, features_dir: Path, state_dir: Path,
                 options: FeatureOptions, row_group_rows: int = 65536, engine_class=None,
                 reorder_window: float = 5.0, trade_options: TradeOptions | None = None,
                 symbol_overrides: dict | None = None, max_gap_ms: int | None = DEFAULT_MAX_GAP_MS,
                 read_checkpoint: bool = True):
        """read_checkpoint=False: start as from no checkpoint without reading it (the service's runner
        made before it holds the instance lock, replaced by one that reads it under the lock)."""
        self.store = SegmentStore(segments_dir).ensure()
        self.features_dir = Path(features_dir)
        self.state_dir = Path(state_dir)
        self.checkpoints = CheckpointStore(state_dir)
        self.keep_outputs = False  # the live path publishes a finished segment's rows it had not
        self.row_group_rows = row_group_rows
        self.bank = EngineBank(options, engine_class, reorder_ms=int(round(reorder_window * 1000)),
                               trade_options=trade_options, symbol_overrides=symbol_overrides,
                               max_gap_ms=max_gap_ms)
        self.checkpoint = self._load_checkpoint() if read_checkpoint else Checkpoint()
        self.last: Outcome | None = None

    @classmethod
    def from_config(cls, cfg: Config, engine_class=None, read_checkpoint: bool = True) -> "EtlRunner":
        return cls(cfg.segments_dir, cfg.features_dir, cfg.state_dir, cfg.etl.features,
                   cfg.etl.row_group_rows, engine_class, cfg.etl.reorder_window, cfg.etl.trades,
                   cfg.etl.symbol_overrides, cfg.etl.max_gap_ms, read_checkpoint)

    def _load_checkpoint(self) -> Checkpoint:
        """The checkpoint, its kernel state restored into the bank.  One that cannot be read, or whose
        state does not load, is set aside: the ETL goes on from empty kernel state instead of failing
        at every start (nothing else can fix it), and says so at error level."""
        try:
            ckpt = self.checkpoints.load()
        except CheckpointUnreadable as e:
            return self._set_aside(str(e))
        if ckpt.options_fingerprint and ckpt.options_fingerprint != self.bank.fingerprint:
            log.warning("checkpoint_options_changed", last_segment=ckpt.last_segment,
                        note="feature options changed: kernel state restarts empty; use `fluxforge replay` to recompute history")
            ckpt = Checkpoint(last_segment=ckpt.last_segment, options_fingerprint=self.bank.fingerprint,
                              counters=ckpt.counters)
        try:
            self.bank.restore(ckpt.symbols)
        except MemoryError:
            raise  # (memory pressure passes: the checkpoint is fine)
        except Exception as e:  # noqa: BLE001 -- any failure to rebuild a symbol's engines from its bytes
            return self._set_aside(f"{self.checkpoints.path}: a symbol's kernel state does not load: "
                                   f"{type(e).__name__}: {e}")
        return ckpt

    def _set_aside(self, error: str) -> Checkpoint:
        aside = self.checkpoints.set_aside()
        self.bank.restore({})
        done = self.store.list("done")
        log.error("checkpoint_unreadable", error=error, moved_to=str(aside),
                  last_done=done[-1].name if done else None,
                  note="kernel state restarts empty (each symbol's features restart as after a gap); segments "
                       "already in done/ are not processed again, one left in processing/ is redone; the rows "
                       "the checkpoint held past the end of the last one done (its last etl.reorder_window) are "
                       "not computed: `fluxforge replay` recomputes them; the late/duplicate counters restart at 0")
        return Checkpoint(options_fingerprint=self.bank.fingerprint)

    # -- discovery -----------------------------------------------------------------
    def backlog(self) -> list[Path]:
        return self.store.list("ready")

    def recover(self) -> list[Outcome]:
        """Finish or redo whatever a crash left in processing/ (oldest first)."""
        try:
            removed = remove_stale_temps(self.features_dir)
        except OSError as e:
            if e.errno not in ENV_ERRNOS:
                raise
            raise RetryLater.from_oserror("removing stale temp parts", e) from e
        if removed:
            log.info("stale_temp_parts_removed", count=removed)
        outcomes = []
        for seg_dir in self.store.list("processing"):
            if seg_dir.name == self.checkpoint.last_segment:
                self.store.move(seg_dir, "done")
                log.info("segment_recovered", segment=seg_dir.name, action="checkpointed; moved to done")
                outcomes.append(Outcome(seg_dir.name, "done"))
            else:
                log.info("segment_recovered", segment=seg_dir.name, action="redo from checkpoint",
                         checkpoint=self.checkpoint.last_segment)
                outcomes.append(self.process_claimed(seg_dir))
        return outcomes

    def claim_next(self) -> Path | None:
        """Move the oldest ready segment into processing/ (one rename); None if none is ready."""
        for seg_dir in self.backlog():
            try:
                claimed = self.store.move(seg_dir, "processing")
            except FileNotFoundError:
                continue  # vanished between listing and rename (another tool moved it)
            return claimed
        return None

    def _older_than_checkpoint(self, segment: str) -> bool:
        last = self.checkpoint.last_segment
        if not (last and SegmentId.is_segment_name(last) and SegmentId.is_segment_name(segment)):
            return False
        return SegmentId.parse(segment).precedes(SegmentId.parse(last))

    # -- processing ----------------------------------------------------------------
    def process_claimed(self, seg_dir: Path, handover=None) -> Outcome:
        """handover: the live path's segment_job.Handover for this segment, if it followed it."""
        segment = seg_dir.name
        if self._older_than_checkpoint(segment):
            log.warning("segment_out_of_order", segment=segment, checkpoint=self.checkpoint.last_segment)
            return self._reject(seg_dir, f"{OLDER_THAN_CHECKPOINT} (checkpoint is at {self.checkpoint.last_segment})")
        try:
            chunk_log.adopt(self.state_dir, seg_dir)  # fed in the chunks the live path published
            result = run_segment(seg_dir, self.bank, self.features_dir, self.row_group_rows,
                                 keep_outputs=self.keep_outputs, handover=handover)
            state = result.state  # the live engines' snapshot, or None: take it now
            if state is not None:  # the live path's engines did it (and go on with the next segment):
                self.bank.restore(state, checked=False)  # this bank's engines are built only if needed
                result.state = None
        except BadSegment as e:
            return self._reject(seg_dir, str(e))
        except OSError as e:
            self.bank.restore(self.checkpoint.symbols)
            if e.errno in ENV_ERRNOS:
                log.error("segment_retry_later", segment=segment, error=str(e))
                raise RetryLater.from_oserror(segment, e) from e
            return self._reject(seg_dir, f"cannot read: {e}")
        except Exception as e:  # data the kernels refuse: keep going with the next segment
            log.exception("segment_processing_error", segment=segment)
            return self._reject(seg_dir, f"processing error: {type(e).__name__}: {e}")
        ckpt = Checkpoint(segment, self.bank.fingerprint, state if state is not None else self.bank.snapshot(),
                          _count(self.checkpoint.counters, segment, result))
        try:
            self.checkpoints.save(ckpt)
        except OSError as e:  # e.g. no room for the checkpoint's temp file: redo the segment later
            self.bank.restore(self.checkpoint.symbols)
            if e.errno not in ENV_ERRNOS:
                raise
            log.error("segment_retry_later", segment=segment, error=f"checkpoint: {e}")
            raise RetryLater.from_oserror(f"{segment} checkpoint", e) from e
        self.checkpoint = ckpt
        self.store.move(seg_dir, "done")
        log.info("segment_done", segment=segment, books=result.books, trades=result.trades,
                 hf_rows=result.hf_rows, bar_rows=result.bar_rows, files=len(result.files),
                 late_dropped=result.late_dropped, duplicate_trades=result.duplicate_trades,
                 **{f"tickers_{k}": n for k, n in result.tickers.items()},
                 seconds=round(result.seconds, 3), rows_per_s=round(result.rows_per_s))
        if result.late_dropped:
            log.warning("segment_late_rows", segment=segment, late_dropped=result.late_dropped,
                        note="rows older than what the ETL had already processed were dropped")
        self.last = Outcome(segment, "done", result)
        return self.last

    def _reject(self, seg_dir: Path, reason: str) -> Outcome:
        self.bank.restore(self.checkpoint.symbols)
        self.store.fail(seg_dir, reason)
        log.error("segment_failed", segment=seg_dir.name, reason=reason)
        self.last = Outcome(seg_dir.name, "failed", reason=reason)
        return self.last

    def run_once(self, should_stop=lambda: False) -> list[Outcome]:
        """Recover, then process every ready segment in order (stops between segments)."""
        outcomes = self.recover()
        while not should_stop():
            seg_dir = self.claim_next()
            if seg_dir is None:
                break
            outcomes.append(self.process_claimed(seg_dir))
        return outcomes


def _count(before: dict, segment: str, result: SegmentResult) -> dict:
    """Running totals carried in the checkpoint (shown by `fluxforge status` when non-zero)."""
    out = dict(before)
    for key in ("late_dropped", "duplicate_trades"):
        out[key] = int(out.get(key, 0)) + int(getattr(result, key))
    for kind, n in result.tickers.items():
        out[f"tickers_{kind}"] = int(out.get(f"tickers_{kind}", 0)) + int(n)
    if result.late_dropped:
        out["last_late_segment"] = segment
    return out
