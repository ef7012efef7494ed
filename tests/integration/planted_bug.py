"""`fluxforge collect` with one planted bug: exchange NAME's runner raises once every exchange delivered data.

Usage: python planted_bug.py NAME collect --config PATH   (the rest is the real `fluxforge` CLI)

Why a planted bug: every failure an exchange runner can meet for real is caught
and retried inside it (`load_markets` with backoff, every watcher and the stall
monitor supervised, a future ccxt cancels under a watcher taken as a reconnect),
so a runner that dies is a bug nobody has found yet.  To check what the
collector does then (exit 1 after a final flush, never run on half-dead), this
plants one -- in a child process started by a test, never in the package.
"""
from __future__ import annotations

import asyncio
import sys

from fluxforge.cli import main
from fluxforge.collector import watchers


def plant(doomed: str) -> None:
    real_run = watchers.ExchangeRunner.run

    async def run(self: watchers.ExchangeRunner) -> None:
        if self.xcfg.name != doomed:
            return await real_run(self)
        streams = asyncio.ensure_future(real_run(self))
        everyone = set(self.recorder.depths)  # every configured exchange delivers first: half-alive when it dies
        while not everyone <= {exchange for exchange, _ch, _sym in list(self.recorder.last_seen)}:
            if streams.done():
                return await streams
            await asyncio.sleep(0.05)
        streams.cancel()
        await asyncio.gather(streams, return_exceptions=True)
        raise RuntimeError(f"planted bug in the {doomed} runner")

    watchers.ExchangeRunner.run = run  # type: ignore[method-assign]


if __name__ == "__main__":
    plant(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
