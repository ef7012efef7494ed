"""`fluxforge etl [--once]`: the ETL service (fluxforge-etl.service runs this)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_config_argument

    p = sub.add_parser("etl", help="turn ready bronze segments into Hive-partitioned features (service)")
    add_config_argument(p)
    p.add_argument("--once", action="store_true",
                   help="process what is ready (and anything left in processing/), then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..etl import return_freed_memory_promptly

    return_freed_memory_promptly()  # first: before anything imports pyarrow
    import asyncio

    from ..cli import UserError
    from ..config import load_config
    from ..etl.checkpoint import CheckpointFormatUnknown
    from ..etl.runner import RetryLater
    from ..etl.service import EtlService
    from ..locks import EXIT_ALREADY_RUNNING, LockHeld
    from ..logs import configure_logging

    cfg = load_config(args.config)
    configure_logging(cfg.logging.level, cfg.logging.format, "fluxforge-etl")
    try:
        return asyncio.run(EtlService(cfg, once=args.once).run())
    except RetryLater as e:
        raise UserError(f"etl: will retry later: {e}", exit_code=75) from None
    except CheckpointFormatUnknown as e:  # EX_CONFIG: not restarted; the revive timer tries every 15 min
        raise UserError(f"etl: {e}: another FluxForge version wrote it -- install that version again, or "
                        "move the file away to start from empty kernel state (docs/operations.md)",
                        exit_code=78) from None
    except LockHeld as e:
        raise UserError(f"etl: {e}", exit_code=EXIT_ALREADY_RUNNING) from None
