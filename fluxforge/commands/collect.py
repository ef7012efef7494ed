"""`fluxforge collect`: run the collector (the process behind fluxforge-collector.service)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_config_argument

    p = sub.add_parser("collect", help="stream market data from the configured exchanges into bronze segments")
    add_config_argument(p)
    p.add_argument("--stop-timeout", type=float, default=9.0, metavar="SECONDS",
                   help="on SIGTERM, finish flushing and closing within this many seconds (default 9)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    # Batches are small and short-lived: malloc hands freed memory back, jemalloc's arenas keep
    # ~15 MB more for good.  Read by Arrow when its default pool is first created.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    from ..collector import unused_modules

    unused_modules.refuse()  # before anything imports pyarrow

    from ..config import ConfigError, load_config
    from ..logs import configure_logging

    cfg = load_config(args.config)
    if not cfg.exchanges:
        raise ConfigError("exchanges: at least one exchange is needed to collect")
    from ..collector.ccxt_loader import exchange_classes, is_pro_exchange

    for i, x in enumerate(cfg.exchanges):
        if not is_pro_exchange(x.name):
            raise ConfigError(f"exchanges.{i}.name: {x.name!r} is not a ccxt.pro exchange id")
    configure_logging(cfg.logging.level, cfg.logging.format, identifier="fluxforge-collector")
    # This process only needs the configured exchanges: load just those (before anything
    # imports ccxt), which roughly halves the collector's memory.
    classes = exchange_classes([x.name for x in cfg.exchanges], lean=True)
    from ..collector.channel_support import channel_problems

    for i, x in enumerate(cfg.exchanges):
        for channel, reason in channel_problems(classes[x.name](), list(x.channels), x.ohlcv_timeframes).items():
            field = "ohlcv_timeframes" if channel == "ohlcv" and "timeframe" in reason else "channels"
            raise ConfigError(f"exchanges.{i}.{field}: {channel!r} cannot be collected from {x.name}: {reason}")
    from ..cli import UserError
    from ..collector.app import Collector
    from ..locks import EXIT_ALREADY_RUNNING, LockHeld

    try:
        return event_loop_runner()(Collector(cfg, lean_ccxt=True).run(stop_timeout=args.stop_timeout))
    except LockHeld as e:
        raise UserError(f"collect: {e}", exit_code=EXIT_ALREADY_RUNNING) from None


def event_loop_runner():
    """uvloop's `run` when uvloop is importable (ccxt depends on it), else `asyncio.run`.

    Why: libuv's loop spends less CPU per WebSocket frame than asyncio's own, and the collector
    is a loop of small frames; bench/collector.py --only cryptofeed measures what it buys.
    """
    import asyncio

    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run
