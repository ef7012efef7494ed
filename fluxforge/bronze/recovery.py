"""Start-up recovery of segments a crash left in active/ (DESIGN decision 2).

Why at start-up and not lazily: the collector is the only writer of active/,
so before it opens a new segment every directory still there belongs to a dead
process.  Each is rebuilt from its complete journal batches (a torn tail is
dropped and counted in the manifest) and moved to ready/ like any rotated
segment.  A segment whose journals cannot be read at all goes to failed/ with
a reason.txt; nothing is deleted except hidden half-created directories, which
by construction never held data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .active_segment import remove_abandoned_creations
from .finish import finish_segment_with_manifest
from .journal import JournalUnreadable
from ..fsio import DISK_FULL_ERRNOS
from ..logs import get_logger
from .segments import SegmentStore

log = get_logger("fluxforge.recovery")


@dataclass
class RecoveryReport:
    recovered: list[Path] = field(default_factory=list)   # now in ready/
    failed: list[Path] = field(default_factory=list)      # now in failed/
    postponed: list[Path] = field(default_factory=list)   # left in active/: disk full
    torn_batches_dropped: int = 0
    abandoned_removed: int = 0


def _fail(store: SegmentStore, seg_dir: Path, error: Exception) -> Path:
    reason = f"recovery failed: {type(error).__name__}: {error}"
    log.error("segment_recovery_failed", segment=seg_dir.name, reason=reason)
    return store.fail(seg_dir, reason)


def recover_active_segments(store: SegmentStore) -> RecoveryReport:
    """Finish or fail every segment left in active/; returns what happened."""
    store.ensure()
    report = RecoveryReport()
    report.abandoned_removed = len(remove_abandoned_creations(store))
    for seg_dir in store.list("active"):
        try:
            ready, manifest = finish_segment_with_manifest(seg_dir, store, recovered=True)
        except OSError as e:
            if e.errno in DISK_FULL_ERRNOS:
                # Not the segment's fault: leave it in active/ and retry on a later start.
                report.postponed.append(seg_dir)
                log.error("segment_recovery_postponed", segment=seg_dir.name, reason=str(e))
                continue
            failed = _fail(store, seg_dir, e)
            report.failed.append(failed)
            continue
        except (JournalUnreadable, ValueError) as e:
            report.failed.append(_fail(store, seg_dir, e))
            continue
        except Exception as e:  # noqa: BLE001 -- anything else unreadable: failed/, never a crash loop
            report.failed.append(_fail(store, seg_dir, e))
            continue
        torn = int(manifest.get("torn_batches_dropped", 0))
        report.recovered.append(ready)
        report.torn_batches_dropped += torn
        log.warning("segment_recovered", segment=ready.name, rows=manifest.get("rows"),
                    torn_batches_dropped=torn)
    return report
