"""Helpers shared by the loopback exchange tests: bounded asyncio runs and ccxt.pro clients.

Every test body runs under one overall timeout so a wedged socket fails the test
instead of hanging CI; servers bind ephemeral ports on 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import contextlib

import ccxt.pro


def run(coro, timeout: float = 60.0):
    """Run `coro` in a fresh event loop, failing after `timeout` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def ccxt_client(lx, exchange: str = "binance"):
    """An unmodified ccxt.pro exchange configured only with the loopback's config dict."""
    client = getattr(ccxt.pro, exchange)(lx.ccxt_config(exchange))
    try:
        yield client
    finally:
        await client.close()


async def watch_until(watch, done, limit: int = 500):
    """Call `watch()` until `done(result)` is true; at most `limit` calls. Returns the last result."""
    for _ in range(limit):
        result = await watch()
        if done(result):
            return result
    raise AssertionError(f"condition not reached after {limit} updates")
