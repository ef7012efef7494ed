"""`fluxforge loopback`: run the loopback exchange (sim or capture replay) on 127.0.0.1.

With `--print-config` one JSON line goes to stdout once the port is bound:
host, port, URLs and the ccxt config dict per protocol, ready to paste under an
exchange's `ccxt:` key.  Runs until SIGTERM / SIGINT.
"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("loopback", help="run a local exchange that unmodified ccxt.pro talks to (tests, demos)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("sim", "replay"), default="sim",
                   help="sim: random-walk market; replay: replay capture FILEs (default: sim)")
    p.add_argument("files", nargs="*", metavar="FILE", help="replay mode: '<ns> <json>' capture files (.gz ok)")
    p.add_argument("--symbols", default="BTC/USDT,ETH/USDT", help="sim mode: comma-separated BASE/QUOTE symbols")
    p.add_argument("--rate", type=float, default=10.0, help="sim: book updates per second per symbol (default 10)")
    p.add_argument("--trades-per-update", type=float, default=0.5, help="sim: mean trades per book update")
    p.add_argument("--ticker-interval", type=float, default=1.0, help="sim: seconds between tickers per symbol")
    p.add_argument("--depth", type=int, default=100, help="sim: price levels per side")
    p.add_argument("--seed", type=int, default=None, help="sim: random seed (repeatable market)")
    p.add_argument("--speed", type=float, default=1.0, help="replay: speed-up factor (0 = as fast as possible)")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default 0: ephemeral)")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="scheduled fault KIND@AT[/EVERY][:k=v,...], e.g. gap@5, stall@10:seconds=3 (repeatable)")
    p.add_argument("--print-config", action="store_true",
                   help="print one JSON line (port, URLs, ccxt config per protocol) on stdout when ready")
    p.set_defaults(func=run_loopback)


def run_loopback(args: argparse.Namespace) -> int:
    import asyncio

    from ..cli import UserError
    from ..loopback import FaultSpec, LoopbackExchange, SimOptions

    try:
        faults = [FaultSpec.parse(spec) for spec in args.fault]
        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
        if args.mode == "replay" and not args.files:
            raise ValueError("replay mode needs at least one capture FILE")
        if args.mode == "sim" and args.files:
            raise ValueError("capture FILEs are only used with --mode replay")
        exchange = LoopbackExchange(
            args.mode, symbols, port=args.port, faults=faults, replay_files=args.files, speed=args.speed,
            sim=SimOptions(rate=args.rate, trades_per_update=args.trades_per_update,
                           ticker_interval=args.ticker_interval, depth=args.depth, seed=args.seed))
    except (ValueError, OSError) as e:
        raise UserError(str(e)) from None
    try:
        asyncio.run(serve(exchange, args.print_config))
    except OSError as e:  # e.g. the port is taken
        raise UserError(f"cannot serve on 127.0.0.1:{args.port}: {e.strerror or e}") from None
    return 0


async def serve(exchange, print_config: bool) -> None:
    import asyncio
    import json
    import signal
    import sys

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with exchange:
        info = exchange.describe()
        if print_config:
            print(json.dumps(info), flush=True)
        print(f"fluxforge loopback: {info['mode']} {','.join(info['symbols'])} on {info['url']}",
              file=sys.stderr, flush=True)
        await stop.wait()
