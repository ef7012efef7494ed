"""`fluxforge import daedalus SRC... --to DIR [--host H]`: bring another system's recorded data into bronze.

A thin front over `fluxforge.migrate.daedalus_import`; prints the import's report
(rows per channel, segments, every skipped file / line / field) and exits 1 when some
input could not be imported, 0 otherwise.
"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import data recorded by another system into bronze segments")
    systems = p.add_subparsers(dest="system", metavar="SYSTEM", required=True)
    d = systems.add_parser("daedalus", help="Daedalus raw Parquet (flat or partitioned) and NDJSON segments",
                           description="Read Daedalus's raw bronze (ticker / trades / orderbook / ohlcv / bidask "
                                       "Parquet, flat or exchange=/symbol=/year=/month=/day=/hour= trees, NDJSON "
                                       "segments, and its native Coinbase collector's messages) and write FluxForge "
                                       "bronze segments, one per hour, into DIR/segments/ready/ (coinbaseadvanced "
                                       "data as coinbase, as `config import-daedalus` names it). Files imported "
                                       "before (same content) are skipped.")
    d.add_argument("sources", nargs="+", metavar="SRC", help="a Daedalus data file or a directory tree of them")
    d.add_argument("--to", required=True, metavar="DIR", help="FluxForge data directory (segments/ready/ inside)")
    d.add_argument("--host", default="daedalus", metavar="H",
                   help="source host name recorded in the segment names (default: daedalus)")
    d.add_argument("--symbol", action="append", default=[], metavar="OLD=SYMBOL",
                   help="read the sanitised partition symbol OLD as SYMBOL (e.g. FOO-BAR-USD=FOO-BAR/USD); repeatable")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cli import UserError
    from ..locks import LockHeld
    from ..migrate.daedalus_import import import_daedalus

    overrides = {}
    for item in args.symbol:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise UserError(f"--symbol {item!r}: expected OLD=SYMBOL")
        overrides[old] = new
    try:
        report = import_daedalus(args.sources, args.to, host=args.host, symbol_overrides=overrides)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    except OSError as e:  # e.g. DIR not writable or full: staging is discarded by the next run
        raise UserError(f"import stopped: {e}", exit_code=1) from None
    except LockHeld as e:
        raise UserError(f"another import is running: {e}") from None
    for line in report.lines():
        print(line)
    return 1 if report.problems else 0
