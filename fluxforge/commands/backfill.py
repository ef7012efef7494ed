"""`fluxforge backfill SOURCE... --out DEST`: recompute features for a fleet's bronze in parallel."""
from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_config_argument

    p = sub.add_parser("backfill", help="recompute features for many hosts' bronze (local or s3://) in parallel, "
                                        "identical to a per-host `fluxforge replay`")
    add_config_argument(p)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="s3://bucket/prefix (sync layout), or segment directories / segments roots")
    p.add_argument("--out", required=True, metavar="DEST", help="feature tree to write: a directory or s3://bucket/prefix")
    p.add_argument("--host", action="append", default=[], metavar="GLOB", help="only these hosts (repeatable)")
    p.add_argument("--exchange", action="append", default=[], metavar="GLOB", help="only these exchanges (repeatable)")
    p.add_argument("--symbol", action="append", default=[], metavar="GLOB",
                   help="only these ccxt symbols, e.g. 'BTC/*' (repeatable)")
    p.add_argument("--start", metavar="UTC", help="first date/time (e.g. 2024-08-08 or 2024-08-08T12:00)")
    p.add_argument("--end", metavar="UTC", help="end date/time (exclusive)")
    p.add_argument("--features", metavar="FILE",
                   help="YAML with an etl section of the options to compute: features, trades, symbol_overrides, "
                        "max_gap_seconds (the keys given override the config's)")
    p.add_argument("--engine", choices=("local", "dask"), default="local", help="task engine (default: local)")
    p.add_argument("--address", metavar="tcp://HOST:8786", help="Dask scheduler (with --engine dask)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes for local / a local Dask cluster (default: CPU count)")
    p.add_argument("--cache", metavar="DIR", help="where workers keep fetched S3 segments "
                                                  "(default: $TMPDIR/fluxforge-backfill)")
    p.set_defaults(func=run)


PRODUCT_KEYS = ("features", "trades", "symbol_overrides", "max_gap_seconds")  # the etl options that shape outputs


def _product_options(path: str, base):
    """The config's `etl` (base) with FILE's etl.features / etl.trades / etl.symbol_overrides (merged key by
    key) and etl.max_gap_seconds over it, validated like the config; other etl keys are refused."""
    import yaml
    from pydantic import ValidationError

    from ..config import ConfigError, EtlConfig

    try:
        data = yaml.safe_load(open(path).read()) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    etl = data.get("etl") if isinstance(data, dict) else None
    keys = ", ".join("etl." + k for k in PRODUCT_KEYS)
    other = sorted(set(etl) - set(PRODUCT_KEYS)) if isinstance(etl, dict) else []
    if other:
        raise ConfigError(f"{path}: {', '.join('etl.' + k for k in other)}: not an output option (--features reads {keys})")
    if not isinstance(etl, dict) or not etl:
        raise ConfigError(f"{path}: no etl section with any of {keys}")
    merged = {k: getattr(base, k) for k in PRODUCT_KEYS}
    merged = {k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in merged.items()}
    for key, value in etl.items():
        merged[key] = {**merged[key], **value} if isinstance(merged[key], dict) and isinstance(value, dict) else value
    try:
        return EtlConfig.model_validate(merged)
    except ValidationError as e:
        fields = "; ".join(f"etl.{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ConfigError(f"{path}: {fields}") from None


def run(args: argparse.Namespace) -> int:
    from ..etl import return_freed_memory_promptly

    return_freed_memory_promptly()  # first: before anything imports pyarrow
    import tempfile
    from pathlib import Path

    from ..backfill.executor import EngineUnavailable
    from ..backfill.location import parse_location
    from ..backfill.plan import Filters, parse_time
    from ..backfill.run import BackfillMismatch, BackfillRequest, NoSegments, backfill
    from ..cli import UserError
    from ..config import Config, config_path, load_config
    from ..logs import configure_logging
    from ..progress import Progress
    from ..sync.client import SyncError

    cfg = load_config(args.config) if args.config or config_path(None).exists() else Config()
    etl = _product_options(args.features, cfg.etl) if args.features else cfg.etl
    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    try:
        filters = Filters(tuple(args.host), tuple(args.exchange), tuple(args.symbol),
                          parse_time(args.start) if args.start else None, parse_time(args.end) if args.end else None)
        sources = [parse_location(s, cfg.sync) for s in args.sources]
        dest = parse_location(args.out, cfg.sync)
    except ValueError as e:
        raise UserError(str(e)) from None
    for s in sources:
        if not s.is_s3 and not s.path.is_dir():
            raise UserError(f"{s}: not a directory")
    configure_logging(cfg.logging.level, cfg.logging.format, "fluxforge-backfill")
    req = BackfillRequest(sources, dest, etl.features, filters, args.engine, args.workers, args.address,
                          args.cache or str(Path(tempfile.gettempdir()) / "fluxforge-backfill"),
                          cfg.etl.row_group_rows, cfg.etl.reorder_window,
                          trades=etl.trades, symbol_overrides=etl.symbol_overrides, max_gap_ms=etl.max_gap_ms)
    try:
        with Progress(None, "backfill", " units") as bar:
            report = backfill(req, bar)
    except NoSegments as e:
        raise UserError(str(e)) from None
    except (SyncError, EngineUnavailable, BackfillMismatch, ValueError) as e:
        raise UserError(str(e), exit_code=1) from None
    rate = report.books / report.seconds if report.seconds > 0 else 0.0
    print(f"backfilled {report.units_done} of {report.units} units ({report.already_done} already done) from "
          f"{report.segments} segments: {report.books:,} book snapshots in {report.seconds:.1f} s "
          f"({rate:,.0f}/s) into {dest}"
          + (f"; skipped {len(report.skipped)} segments" if report.skipped else "")
          + (f"; {len(report.failed)} units FAILED (rerun to resume)" if report.failed else ""))
    for name, reason in report.skipped:
        print(f"  skipped {name}: {reason}")
    for unit, error in report.failed:
        print(f"  failed {unit}: {error}")
    return 1 if report.failed else 0
