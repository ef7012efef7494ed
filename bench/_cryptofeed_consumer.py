"""cryptofeed's Binance feed on the loopback exchange: the baseline consumer of bench/collector.py's `cryptofeed` run.

Why a script of its own: bench/collector.py measures each consumer as a subprocess (CPU time from
/proc, the loopback excluded), and cryptofeed is the feed handler users pick instead of FluxForge.
Its `Binance` feed is used unmodified; only its endpoints point at the loopback (a subclass
overriding `websocket_endpoints` / `rest_endpoints`, as cryptofeed's sandbox URLs are, and its
connection class let through the loopback's plain ws:// address), so it connects with its own URL form (`/stream?streams=btcusdt@depth@100ms/btcusdt@aggTrade/...`),
fetches its own depth snapshots and keeps its own books.  The callbacks only count: cryptofeed's
cost is parsing, normalising (Decimal) and book keeping, with nothing written.

Usage: `python bench/_cryptofeed_consumer.py '{"url": ..., "ws_url": ..., "symbols": ["BTC/USDT"], "uvloop": true}'`.
On SIGTERM it prints `{"book": n, "trades": n, "ticker": n}` (callbacks received) as its last stderr line.
"""
from __future__ import annotations

import asyncio
import json
import sys

import cryptofeed.feed
from cryptofeed import FeedHandler
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint, WSAsyncConn
from cryptofeed.defines import L2_BOOK, TICKER, TRADES
from cryptofeed.exchanges import Binance


class PlainWSConn(WSAsyncConn):
    """cryptofeed's WebSocket connection, allowed a plain `ws://` address (it insists on `wss://`).

    The loopback exchange speaks plain ws:// on 127.0.0.1 to every consumer, ccxt included, so no
    one pays for TLS here; everything after the address check is cryptofeed's own code."""

    def __init__(self, address: str, conn_id: str, **kwargs):
        plain = address.startswith("ws://")
        super().__init__("wss://" + address[len("ws://"):] if plain else address, conn_id, **kwargs)
        self.address = address


def loopback_binance(url: str, ws_url: str) -> type:
    """cryptofeed's Binance feed class with its endpoints at the loopback exchange."""

    class LoopbackBinance(Binance):
        websocket_endpoints = [WebsocketEndpoint(ws_url)]
        rest_endpoints = [RestEndpoint(url, routes=Routes("/api/v3/exchangeInfo",
                                                          l2book="/api/v3/depth?symbol={}&limit={}"))]

    return LoopbackBinance


def main() -> None:
    cfg = json.loads(sys.argv[1])
    cryptofeed.feed.WSAsyncConn = PlainWSConn  # the name Feed.connect() builds its connections with
    counts = {"book": 0, "trades": 0, "ticker": 0}

    def counter(key: str):
        async def count(obj, receipt_timestamp) -> None:
            counts[key] += 1
        return count

    handler = FeedHandler(config={"uvloop": cfg.get("uvloop", True), "log": {"disabled": True}})
    feed = loopback_binance(cfg["url"], cfg["ws_url"])
    handler.add_feed(feed(symbols=[s.replace("/", "-") for s in cfg["symbols"]], channels=[L2_BOOK, TRADES, TICKER],
                          callbacks={L2_BOOK: counter("book"), TRADES: counter("trades"), TICKER: counter("ticker")}))
    # FeedHandler() installed uvloop's policy, whose get_event_loop() (uvloop >= 0.21) no longer
    # creates a loop, as cryptofeed 2.4's run() expects: give it one (a uvloop loop, by that policy)
    asyncio.set_event_loop(asyncio.new_event_loop())
    handler.run()  # until SIGTERM (cryptofeed installs its own handler)
    print(json.dumps(counts), file=sys.stderr)


if __name__ == "__main__":
    main()
