"""`--data-dir DIR`: point status/report at a data directory (e.g. one made by `fluxforge demo`).

Why: a data directory is self-describing (segments/, features/), so looking at
one should not require writing a config file first.  With --data-dir and no
config file, the defaults apply; an explicit --config must still exist.
"""
from __future__ import annotations

import argparse


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="use this data directory instead of the config's data_dir "
                             "(the config file is optional then)")


def load_for_data_dir(config: str | None, data_dir: str | None):
    """The config, with data_dir overridden; with --data-dir and no config file, the defaults.

    Secret references need not resolve: these commands only read the data directory, and an
    operator runs them by hand, outside the units that load the credentials."""
    from ..config import Config, ConfigError, config_path, load_config

    try:
        cfg = load_config(config, secrets=False)
    except ConfigError:
        if data_dir is None or config is not None or config_path(None).exists():
            raise
        cfg = Config()
    if data_dir is not None:
        cfg.data_dir = data_dir
    return cfg
