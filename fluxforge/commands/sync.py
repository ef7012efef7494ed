"""`fluxforge sync`: ship bronze and features to S3, verified (run by fluxforge-sync.timer)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_config_argument

    p = sub.add_parser("sync", help="upload done segments and feature files to S3 (verified), then apply retention")
    add_config_argument(p)
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded; touch nothing")
    p.add_argument("--verify", action="store_true",
                   help="HEAD every recorded object and re-queue those missing or with a wrong checksum")
    p.add_argument("--download", metavar="PREFIX",
                   help="download objects below PREFIX (relative to sync.prefix, e.g. bronze/host=pi01/) ...")
    p.add_argument("--to", metavar="DIR", help="... into DIR (required with --download)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sqlite3
    from pathlib import Path

    from ..cli import UserError
    from ..config import load_config
    from ..logs import configure_logging, get_logger
    from ..sync.client import SyncError, make_target
    from ..sync.timesync import wait_for_clock
    from ..observe.job_reports import record_sync
    from ..observe.textfile import job_metrics

    cfg = load_config(args.config)
    configure_logging(cfg.logging.level, cfg.logging.format, "fluxforge-sync")
    log = get_logger("fluxforge.sync")
    if args.download is not None and not args.to:
        raise UserError("--download needs --to DIR")
    if not cfg.sync.enabled and args.download is None:
        log.info("sync_disabled", hint="set sync.enabled: true and sync.bucket; applying retention only")
        return _retention_only(cfg, args.dry_run, log)
    with job_metrics(cfg, "sync", enabled=args.download is None and not args.dry_run) as job:
        if cfg.sync.require_time_sync and not args.dry_run and not wait_for_clock(cfg.sync.time_sync_wait):
            log.warning("sync_skipped_clock_unsynchronised", waited_seconds=cfg.sync.time_sync_wait,
                        hint="no /run/systemd/timesync/synchronized yet; S3 would reject signatures; retrying next timer run")
            job.outcome = "skipped"
            return _retention_only(cfg, False, log)
        try:
            target = make_target(cfg.sync)
            log.info("sync_started", endpoint=target.client.meta.endpoint_url, bucket=target.bucket, prefix=target.prefix,
                     credentials=target.credential_source, workers=cfg.sync.workers, checksum=cfg.sync.checksum_algorithm)
            if args.download is not None:
                return _download(args, cfg, target, Path(args.to), log)
            return _sync(args, cfg, target, log, job)
        except SyncError as e:
            log.error("sync_failed", error=str(e))
            record_sync(job, cfg, None, [str(e)])
            raise UserError(f"sync failed: {e}", exit_code=1) from None
        except (OSError, sqlite3.Error) as e:  # e.g. a full disk under the state db: nothing was deleted
            log.error("sync_failed", error=str(e))
            raise UserError(f"sync failed: {e}", exit_code=1) from None


def _retention_only(cfg, dry_run: bool, log) -> int:
    from ..maintenance.lock import maintenance_lock
    from ..maintenance.retention import enforce
    from ..observe.job_reports import record_retention
    from ..observe.textfile import job_metrics
    from ..sync.state import NoUploads, upload_state_or_nothing

    with job_metrics(cfg, "retention", enabled=not dry_run) as job, \
            maintenance_lock(cfg.state_dir), upload_state_or_nothing(cfg.state_dir, log) as state:
        report = enforce(cfg, state, dry_run=dry_run)
        record_retention(job, len(report.deleted), sum(v.bytes for v in report.deleted))
    return 1 if isinstance(state, NoUploads) else 0


def _download(args, cfg, target, dest, log) -> int:
    from ..progress import Progress
    from ..sync.download import download

    with Progress(None, "download", unit="B") as progress:
        rep = download(target, cfg.sync, args.download, dest, progress)
    log.info("download_finished", prefix=args.download, to=str(dest), downloaded=rep.downloaded,
             skipped=rep.skipped, bytes=rep.bytes, failed=len(rep.failed), refused=len(rep.refused))
    for key, why in rep.refused:
        print(f"REFUSED {key!r}: {why}")
    return 1 if rep.failed or rep.refused else 0


def _sync(args, cfg, target, log, job) -> int:
    from ..cli import UserError
    from ..maintenance.lock import maintenance_lock
    from ..progress import Progress
    from ..observe.job_reports import record_retention, record_sync
    from ..observe.textfile import job_metrics
    from ..sync.run import run_sync, verify_remote
    from ..maintenance.retention import enforce
    from ..sync.state import NoUploads, upload_state_or_nothing

    with maintenance_lock(cfg.state_dir), upload_state_or_nothing(cfg.state_dir, log) as state:
        if isinstance(state, NoUploads):  # corrupt record: upload nothing, but keep the disk from filling
            enforce(cfg, state, dry_run=args.dry_run)
            raise UserError(f"sync failed: {state.reason}", exit_code=1)
        if args.verify:
            bad = verify_remote(target, state)
            for logical, why in bad:
                print(f"MISMATCH {logical}: {why}")
            log.info("verify_finished", mismatches=len(bad))
            if bad:
                return 1
        with Progress(None, "sync", unit="B") as progress:
            rep = run_sync(cfg, target, state, dry_run=args.dry_run, progress=progress)
    log.info("sync_finished", dry_run=args.dry_run, planned=rep.planned, uploaded=rep.uploaded, bytes=rep.bytes,
             already_current=rep.already_current, failed=len(rep.failed), damaged=len(rep.damaged), superseded_deleted=rep.superseded_deleted,
             local_deleted=rep.local_deleted, retention_deleted=rep.retention_deleted)
    for logical, why in rep.failed:
        print(f"FAILED {logical}: {why}")
    for path, why in rep.damaged:
        print(f"DAMAGED {path}: {why}; not uploaded, kept (docs/operations.md, 'A damaged bronze file')")
    if not args.dry_run:
        record_sync(job, cfg, rep, [])
        job.outcome = "failure" if rep.failed or rep.damaged else None
        with job_metrics(cfg, "retention") as retention:
            record_retention(retention, rep.retention_deleted, rep.retention_bytes)
    return 1 if rep.failed or rep.damaged else 0
