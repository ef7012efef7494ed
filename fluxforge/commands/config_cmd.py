"""`fluxforge config check`: validate the config and print it with secrets masked."""
from __future__ import annotations

import argparse
import sys

import yaml


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_config_argument

    p = sub.add_parser("config", help="inspect and validate the configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = csub.add_parser("check", help="validate the config; print the effective config, secrets masked; exit 0 or 78")
    add_config_argument(check)
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from ..config import config_path, load_config, masked_dump

    cfg = load_config(args.config)
    print(f"# {config_path(args.config)}: valid")
    from ..observe.data_dir_access import warnings
    for line in warnings(cfg):
        print(f"warning: {line}", file=sys.stderr)
    print(yaml.safe_dump(masked_dump(cfg), sort_keys=False), end="")
    return 0
