"""`fluxforge inspect PATH`: schema, rows, time range, symbols and manifest state of a file or segment;
with `--book-at TIME --symbol S`, a segment's order book rebuilt up to that time (observe/book_view.py)."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help="describe a segment directory or a Parquet/Arrow file",
        description="Describe a segment directory (any state) or one data file: schema, row count, "
                    "time range, symbols and, for a segment, its state and whether manifest.json "
                    "matches the files (rows and sha256).",
        epilog="examples:\n"
               "  fluxforge inspect /var/lib/fluxforge/segments/ready/seg-pi01-20240808T000000Z-000001\n"
               "  fluxforge inspect --json features/bars/interval=60s/exchange=binance/symbol=BTC-USDT/date=2024-08-08/part-*.parquet",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="segment directory, .parquet or .arrows file")
    p.add_argument("--json", action="store_true", help="print JSON (one object per PATH, as a list if several)")
    p.add_argument("--book-at", metavar="TIME", help="show the segment's order book of --symbol rebuilt up to TIME "
                                                     "(ISO 8601, UTC if no zone, or epoch ms)")
    p.add_argument("--symbol", help="ccxt symbol for --book-at, e.g. BTC/USDT")
    p.add_argument("--levels", type=int, default=20, help="levels per side shown by --book-at (default 20)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cli import UserError

    if args.book_at is not None:
        return _book(args)
    from ..observe.inspection import InspectError, format_inspection, inspect_path

    try:
        infos = [inspect_path(p) for p in args.paths]
    except InspectError as e:
        raise UserError(str(e), exit_code=1) from None
    except PermissionError as e:
        raise UserError(f"cannot read {e.filename}: permission denied "
                        "(run as root or as a member of the fluxforge group)", exit_code=1) from None
    if args.json:
        print(json.dumps(infos[0] if len(infos) == 1 else infos, indent=2, default=str))
    else:
        print("\n\n".join(format_inspection(i) for i in infos))
    bad = any(i.get("kind") == "segment" and i["manifest"]["status"] not in ("ok", "absent (active journal)")
              for i in infos)
    return 1 if bad else 0


def _book(args: argparse.Namespace) -> int:
    from ..cli import UserError
    from ..observe.book_view import BookViewError, book_at, format_book, parse_time

    if not args.symbol:
        raise UserError("--book-at needs --symbol", exit_code=2)
    try:
        at = parse_time(args.book_at)
        views = [book_at(p, args.symbol, at, depth=args.levels) for p in args.paths]
    except BookViewError as e:
        raise UserError(str(e), exit_code=1) from None
    if args.json:
        print(json.dumps(views[0] if len(views) == 1 else views, indent=2, default=str))
    else:
        print("\n\n".join(format_book(v) for v in views))
    return 0 if all(v["synced"] for v in views) else 1
