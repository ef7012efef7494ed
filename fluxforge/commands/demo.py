"""`fluxforge demo`: loopback exchange -> collector -> ETL, offline, with a summary, its live rows checked and a chart."""
from __future__ import annotations

import argparse

EPILOG = """\
Runs fully offline: the loopback exchange simulates a Binance spot market on
127.0.0.1, and `fluxforge collect` and `fluxforge etl` run as child processes
exactly as the systemd services do.  Everything is written to DIR:
config.yaml, data/ (segments, features, state), logs/, chart.png.
Running it again with the same DIR replaces the previous demo.
The ETL serves live features: the demo subscribes to them itself and checks
that every row it received is the row that landed in Parquet (exit 1 if not);
`fluxforge live --config DIR/config.yaml` shows them while it runs.

examples:
  fluxforge demo
  fluxforge demo --seconds 60 --symbols 5 --dir /tmp/ff-demo
  fluxforge status --config ./demo-output/config.yaml --no-units
"""


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 3 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 3 and 3600 seconds")
    return value


def _symbol_count(text: str) -> int:
    from ..demo.run import MAX_SYMBOLS

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_SYMBOLS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_SYMBOLS}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole appliance offline for ~30 s and show what it collected",
                       description="Start the loopback exchange (simulated market), the collector and the ETL, "
                                   "collect for --seconds,\nstop cleanly, then print a summary and write a chart.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", "-n", type=_positive_seconds, default=30.0, metavar="N",
                   help="seconds of market data to collect (default 30)")
    p.add_argument("--symbols", "-k", type=_symbol_count, default=3, metavar="K",
                   help="number of simulated symbols (default 3: BTC, ETH, SOL against USDT)")
    p.add_argument("--dir", "-d", default="demo-output", metavar="D",
                   help="directory for the demo's config, data, logs and chart (default ./demo-output, git-ignored)")
    p.add_argument("--no-chart", action="store_true", help="do not draw chart.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import signal
    import sys
    from pathlib import Path

    from ..cli import UserError
    from ..demo.run import DemoError, DemoOptions, run_demo
    from ..demo.summary import render

    opts = DemoOptions(Path(args.dir).absolute(), args.seconds, args.symbols, chart=not args.no_chart)
    print(f"fluxforge demo: {opts.seconds:.0f} s of {', '.join(opts.symbol_list)} from the loopback exchange "
          f"into {opts.directory}", flush=True)
    if opts.live_socket is not None:
        from ..demo.summary import installed_commands
        print(f"watch its live rows from another terminal: {installed_commands()[0]} live --config {opts.config_path}",
              flush=True)
    def interrupted(signum, frame):  # until the event loop takes the signals over
        raise KeyboardInterrupt

    async def demo():
        # SIGTERM (or SIGHUP) like Ctrl-C: the demo's task is cancelled and its `finally` stops our
        # children.  Not an exception raised wherever the signal lands: in one of the tasks it
        # gathers, that task's exception was never retrieved (a traceback on stderr).
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, task.cancel)
        return await run_demo(opts)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    try:
        summary = asyncio.run(demo())
    except DemoError as e:
        raise UserError(f"demo: {e}", exit_code=1) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("fluxforge demo: interrupted; the collector and ETL were stopped", file=sys.stderr)
        return 130
    print(render(summary))
    if summary.failures:
        raise UserError(f"demo: the ETL rejected {len(summary.failures)} segment(s), e.g. {summary.failures[0]}",
                        exit_code=1)
    live = summary.live
    if live is not None and live.error is not None:
        raise UserError(f"demo: the demo's live subscription failed: {live.error}", exit_code=1)
    if live is not None and live.differences:
        raise UserError(f"demo: the live rows are not the Parquet rows: {live.differences[0]}", exit_code=1)
    return 0
