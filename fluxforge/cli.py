"""The `fluxforge` console script: a thin argparse front over fluxforge/commands/*.

Why discovery: each subcommand lives in its own module under
`fluxforge.commands` exposing `register(subparsers)`; adding a command never
edits this file.  Heavy imports happen inside the handlers, so `fluxforge --help`
stays fast on a Pi.  User mistakes end as one clear line and a non-zero exit,
never a traceback; configuration errors exit 78 (EX_CONFIG).
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import __version__
from . import commands as _commands_pkg
from .config import ConfigError


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit code `exit_code`."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fluxforge",
        description="FluxForge market-data appliance: collect, transform, compact and ship crypto market data.",
    )
    parser.add_argument("--version", action="version", version=f"fluxforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(_commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_commands_pkg.__name__}.{info.name}")
        module.register(sub)
    return parser


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """The shared --config option (else $FLUXFORGE_CONFIG, else /etc/fluxforge/config.yaml)."""
    parser.add_argument("--config", "-c", metavar="FILE",
                        help="config file (default: $FLUXFORGE_CONFIG or /etc/fluxforge/config.yaml)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except ConfigError as e:
        print(f"fluxforge: config error: {e}", file=sys.stderr)
        return e.exit_code
    except UserError as e:
        print(f"fluxforge: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `fluxforge status --json | head`: the reader left; silence the final flush, exit like SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    # Import by package name so UserError/ConfigError are the classes the commands raise.
    from .cli import main as _main

    sys.exit(_main())
