"""`fluxforge config check` (validate the config, print it with secrets masked) and
`fluxforge config import-daedalus OLD.yaml` (translate a Daedalus config; the YAML goes to
stdout, warnings and credential instructions to stderr, so `> config.yaml` keeps only the config)."""
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
    imp = csub.add_parser("import-daedalus", help="translate a Daedalus config.yaml into a FluxForge config "
                                                  "(stdout); warnings for what has no equivalent (stderr)")
    imp.add_argument("old", metavar="OLD.yaml", help="the Daedalus config file")
    imp.set_defaults(func=run_import_daedalus)


def run_check(args: argparse.Namespace) -> int:
    from ..config import config_path, load_config, masked_dump

    cfg = load_config(args.config)
    print(f"# {config_path(args.config)}: valid")
    from ..observe.data_dir_access import warnings
    for line in warnings(cfg):
        print(f"warning: {line}", file=sys.stderr)
    print(yaml.safe_dump(masked_dump(cfg), sort_keys=False), end="")
    return 0


def run_import_daedalus(args: argparse.Namespace) -> int:
    from ..cli import UserError
    from ..migrate.config_translation import render
    from ..migrate.daedalus_config import TranslationError, translate

    try:
        with open(args.old, "rb") as f:  # bytes: YAML's encoding rule (UTF-8, or UTF-16 with a BOM)
            old = yaml.safe_load(f)
    except OSError as e:
        raise UserError(f"{args.old}: cannot read: {e.strerror}") from None
    except yaml.reader.ReaderError as e:
        raise UserError(f"{args.old}: not UTF-8 text (offset {e.position}): save it as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{args.old}:{where} invalid YAML: {getattr(e, 'problem', None) or e}"
                        + (" (one config per file)" if "another document" in str(e) else "")) from None
    try:
        tr = translate(old)
    except TranslationError as e:
        raise UserError(f"{args.old}: {e}") from None
    for line in tr.warning_lines():
        print(f"warning: {line}", file=sys.stderr)
    for line in tr.credential_lines():
        print(f"credential: {line}", file=sys.stderr)
    print(render(tr, args.old, "Daedalus"), end="")
    return 0
