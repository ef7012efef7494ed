"""`fluxforge import daedalus`: Daedalus's raw bronze -> FluxForge bronze segments in `<data_dir>/segments/ready/`.

Why through the bronze machinery: an imported segment must be indistinguishable from a
collected one (journals -> Parquet + manifest by `build_segment`, the same finishing
the collector uses), so `fluxforge replay`, `backfill`, the live ETL, sync and
retention take it with no special case.  One segment per UTC hour of receipt, named
`seg-<host>-<hour>-<seq>` with sequence numbers handed out by the data directory in
time order, so the ETL reads the host's history oldest first.

Steps (each file read once): 1. hash every file; skip those the ledger knows;
2. read (daedalus_read), map to bronze (daedalus_map), spill by hour (hour_spill);
3. build each hour's segment in a staging store; 4. announce them in the ledger,
rename them into ready/, commit (import_ledger explains the crash safety).
One import at a time per data directory (`state/import-daedalus.lock`).
"""
from __future__ import annotations

import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

from ..bronze.finish import build_segment
from ..bronze.segments import SegmentStore
from ..fsio import sha256_file
from ..locks import exclusive_lock
from ..progress import Progress
from .daedalus_map import to_bronze, unmapped_counts
from .daedalus_read import find_sources, read_file
from .daedalus_schema import BRONZE_CHANNEL
from .hour_spill import HOUR_NS, HourSpill
from .import_ledger import ImportLedger
from .import_report import ImportReport

STAGING = ".import-daedalus"
DEFAULT_HOST = "daedalus"


def _finish_announced(store: SegmentStore, staged: SegmentStore, ledger: ImportLedger) -> list[str]:
    """Rename every announced segment still in staging into ready/, then commit the ledger."""
    moved = []
    for name in ledger.pending["segments"] if ledger.pending else []:
        src = staged.path("ready", name)
        if src.exists():
            store.move(src, "ready")
            moved.append(name)
    ledger.commit()
    return moved


def _read_all(files: list[Path], report: ImportReport, spill: HourSpill, overrides: Mapping[str, str],
              show_progress: bool | None) -> dict[Path, int]:
    """Read every file into the spill; returns rows kept per file."""
    kept: dict[Path, int] = {}
    total = sum(p.stat().st_size for p in files)
    with Progress(total / 1e6, "import: reading", " MB", enabled=show_progress) as bar:
        for path in files:
            extra: Counter = Counter()
            rows = 0
            for channel, old in read_file(path, report, extra):
                for (c, f), n in unmapped_counts(channel, old).items():
                    report.unmapped_fields[f"{c}.{f}"] += n
                table = to_bronze(channel, old, overrides, report.symbols_restored, report.dropped_rows,
                                  report.exchanges_renamed)
                spill.add(BRONZE_CHANNEL[channel], table)
                report.rows[BRONZE_CHANNEL[channel]] += table.num_rows
                rows += table.num_rows
            report.unmapped_fields.update(extra)
            report.files_read += 1
            kept[path] = rows
            bar.advance(path.stat().st_size / 1e6, note=path.name)
    return kept


def import_daedalus(sources: Iterable[str | Path], data_dir: str | Path, *, host: str = DEFAULT_HOST,
                    symbol_overrides: Mapping[str, str] | None = None,
                    show_progress: bool | None = None) -> ImportReport:
    """Import every Daedalus file under `sources` into `data_dir`; returns what was done.

    Raises FileNotFoundError for a missing SRC, ValueError for a bad host name or ledger,
    `fluxforge.locks.LockHeld` while another import runs on `data_dir`."""
    data_dir = Path(data_dir)
    store = SegmentStore(data_dir / "segments").ensure()
    state = data_dir / "state"
    if not host or not all(c.isalnum() or c in "_." for c in host):
        raise ValueError(f"--host {host!r}: use letters, digits, '_' and '.' (it becomes part of segment names)")
    files = find_sources(sources)
    report = ImportReport()
    with exclusive_lock(state / "import-daedalus.lock", timeout=0.0, what="fluxforge import daedalus"):
        ledger = ImportLedger.load(state)
        staging = store.root / STAGING
        staged = SegmentStore(staging / "segments")
        if ledger.pending:
            moved = _finish_announced(store, staged, ledger)
            report.warnings.append("finished the previous, interrupted import: "
                                   + (", ".join(moved) if moved else "nothing was left to move"))
        shutil.rmtree(staging, ignore_errors=True)

        todo: dict[str, Path] = {}
        for path in files:
            if path.stat().st_size == 0:
                report.empty_files.append(str(path))  # nothing to import, nothing to remember
                continue
            digest = sha256_file(path)
            if digest in ledger.files or digest in todo:
                report.files_already_imported.append(str(path))
            else:
                todo[digest] = path
        spill = HourSpill(staging / "spill")
        kept = _read_all(list(todo.values()), report, spill, symbol_overrides or {}, show_progress)

        hours = spill.hours()
        if hours and host in ledger.hosts and hours[0] <= ledger.hosts[host]:
            report.warnings.append(
                f"host {host!r} already has imported data up to {_hour_name(ledger.hosts[host])}; this run's data "
                f"starts at {_hour_name(hours[0])}, so the ETL will read it after later data (features of "
                "those streams see time go back once): import a host's whole history in one run, or use another --host")
        staged.ensure()
        seq = store.next_seq()
        if hours:
            store.record_seq(seq + len(hours) - 1)  # hand the whole range out before any segment exists
        with Progress(len(hours), "import: segments", enabled=show_progress) as bar:
            for i, hour in enumerate(hours):
                when = datetime.fromtimestamp(hour * HOUR_NS / 1e9, tz=timezone.utc)
                seg = build_segment(staged, host, spill.tables(hour), when=when, seq=seq + i)
                report.segments.append(seg.name)
                bar.advance(1, note=seg.name)
        done_files = {d: {"path": str(p), "host": host, "rows": kept.get(p, 0)} for d, p in todo.items()
                      if str(p) not in {b for b, _ in report.bad_files}}
        ledger.announce(done_files, report.segments, host, hours[-1] if hours else None)
        _finish_announced(store, staged, ledger)
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _hour_name(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, tz=timezone.utc).strftime("%Y-%m-%dT%H:00Z")
