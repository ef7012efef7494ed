"""`fluxforge compact`: merge small feature parts of closed partitions (run by fluxforge-compact.timer)."""
from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_config_argument

    p = sub.add_parser("compact", help="merge the small part files of closed feature partitions")
    add_config_argument(p)
    p.add_argument("--dry-run", action="store_true", help="print the merge plan and change nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cli import UserError
    from ..maintenance.compaction import compact
    from ..config import load_config
    from ..logs import configure_logging, get_logger
    from ..maintenance.lock import maintenance_lock
    from ..observe.job_reports import record_compaction
    from ..observe.textfile import job_metrics
    from ..progress import Progress

    cfg = load_config(args.config)
    configure_logging(cfg.logging.level, cfg.logging.format, "fluxforge-compact")
    log = get_logger("fluxforge.compact")
    with job_metrics(cfg, "compact", enabled=not args.dry_run) as job, \
            maintenance_lock(cfg.state_dir), Progress(None, "compact", unit="B") as progress:
        try:
            report = compact(cfg, dry_run=args.dry_run, progress=progress)
            record_compaction(job, report)
        except OSError as e:  # e.g. ENOSPC: the temp file is removed, the inputs are untouched
            log.error("compaction_failed", error=str(e))
            raise UserError(f"compaction stopped, inputs kept: {e}", exit_code=1) from None
        # a file it could not read, or a merge that failed: the rest is done, the run fails so that it is seen
        job.outcome = "failure" if report.unreadable or report.failed else None
    if args.dry_run:
        for g in report.plan:
            print(f"{g.output}  <- {len(g.inputs)} parts, {g.bytes / 1e6:.1f} MB")
        print(f"# dry run: {report.groups} merges of {report.files_in} files in {report.partitions} closed partitions")
    log.info("compaction_finished", dry_run=args.dry_run, partitions=report.partitions, merges=report.groups,
             files_in=report.files_in, files_out=report.files_out, rows=report.rows,
             bytes_in=report.bytes_in, bytes_out=report.bytes_out, recovered=report.recovered,
             unreadable=len(report.unreadable), failed=len(report.failed))
    for path, why in report.unreadable.items():
        print(f"UNREADABLE {path}: {why}", file=sys.stderr)
    for output, why in report.failed:
        print(f"NOT MERGED {output}: {why} (inputs kept)", file=sys.stderr)
    if report.unreadable or report.failed:
        print("compaction: the files above are kept as they are and every other merge was made; "
              "`fluxforge inspect FILE`, then recompute its segment with `fluxforge replay` "
              "(docs/operations.md) and move the file away", file=sys.stderr)
        return 1
    return 0
