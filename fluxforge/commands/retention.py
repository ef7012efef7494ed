"""`fluxforge retention`: apply the disk watermarks now (sync also does it after each run)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_config_argument

    p = sub.add_parser("retention", help="delete the oldest uploaded data while the disk is above the high watermark")
    add_config_argument(p)
    p.add_argument("--dry-run", action="store_true", help="print what would be deleted")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..logs import configure_logging, get_logger
    from ..maintenance.lock import maintenance_lock
    from ..maintenance.retention import enforce
    from ..sync.state import NoUploads, upload_state_or_nothing

    cfg = load_config(args.config)
    configure_logging(cfg.logging.level, cfg.logging.format, "fluxforge-retention")
    log = get_logger("fluxforge.retention")
    with maintenance_lock(cfg.state_dir), upload_state_or_nothing(cfg.state_dir, log) as state:
        rep = enforce(cfg, state, dry_run=args.dry_run)
    log.info(
        "retention_finished", dry_run=args.dry_run, usage_before=round(rep.usage_before, 1),
        usage_after=round(rep.usage_after, 1), deleted=len(rep.deleted),
        deleted_unsynced=sum(1 for v in rep.deleted if not v.uploaded), blocked_unsynced=rep.blocked_unsynced,
        high=cfg.retention.disk_high_watermark, low=cfg.retention.disk_low_watermark)
    return 1 if isinstance(state, NoUploads) else 0
