"""`fluxforge status`: is the appliance healthy?  Exit 0 OK, 1 warning, 2 critical (for monitoring)."""
from __future__ import annotations

import argparse
import json

UNKNOWN = 3

EPILOG = """\
exit status: 0 nothing needs attention, 1 at least one warning, 2 at least one
critical problem, 3 the data could not be read (monitoring-plugin convention:
OK, WARNING, CRITICAL, UNKNOWN), 78 invalid config.
Every warning code is explained in docs/operations.md ("status warnings").

examples:
  fluxforge status
  fluxforge status --json | jq '.warnings'
  fluxforge status --data-dir ./demo-output/data   # the data made by `fluxforge demo`
"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_config_argument
    from ._data_dir import add_data_dir_argument

    p = sub.add_parser(
        "status", help="health of the appliance: segments, ETL lag, streams, disk, sync, units",
        description="Show segment counts and ages per state, ETL lag, per exchange/symbol message age\n"
                    "and rate, gaps and drops in the last hour, disk usage against the retention\n"
                    "watermark, sync backlog and the systemd units, then what needs attention.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(p)
    add_data_dir_argument(p)
    p.add_argument("--json", action="store_true", help="print the facts and warnings as one JSON object")
    p.add_argument("--no-units", action="store_true", help="do not query systemd")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..observe.status import collect
    from ._data_dir import load_for_data_dir
    from ..observe.status_checks import check, exit_code
    from ..observe.status_text import render

    from ..cli import UserError

    cfg = load_for_data_dir(args.config, args.data_dir)
    try:
        facts = collect(cfg, with_units=not args.no_units)
    except PermissionError as e:
        # monitoring-plugin UNKNOWN: we cannot tell whether anything needs attention
        raise UserError(f"cannot read {e.filename or cfg.data_dir}: permission denied "
                        "(run as root or as a member of the fluxforge group)", exit_code=UNKNOWN) from None
    warnings = check(facts, cfg)
    rc = exit_code(warnings)
    if args.json:
        facts["warnings"] = [w.as_dict() for w in warnings]
        facts["exit_code"] = rc
        print(json.dumps(facts, indent=2, default=str))
    else:
        print(render(facts, warnings))
    return rc
