"""Keep-alive frames of the loopback's Coinbase and Kraken protocols (the `Connection.heartbeat()` hook).

Coinbase sends a `heartbeats` message a second (counter from 1) to a connection
subscribed to that channel; Kraken a `{"channel":"heartbeat"}` a second once a
connection has any subscription.  Neither sends one before, and the heartbeat
loop ends with its connection.
"""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from fluxforge.loopback import LoopbackExchange, SimOptions
from fluxforge.loopback.coinbase import WS_PATH

SYMBOLS = ["BTC/USDT"]


async def frames_until(ws, predicate, timeout: float = 15.0) -> list[dict]:
    """Every JSON frame received until one satisfies `predicate` (bounded wait)."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        frame = json.loads(msg.data)
        seen.append(frame)
        if predicate(frame, seen):
            return seen


def test_coinbase_heartbeats_count_up_once_subscribed():
    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=5, seed=1)) as lx:
            lx.freeze()  # nothing but heartbeats and acks on the wire
            async with aiohttp.ClientSession() as http, http.ws_connect(lx.ws_url + WS_PATH) as ws:
                await ws.send_json({"type": "subscribe", "channel": "level2", "product_ids": ["BTC-USDT"]})
                early = await frames_until(ws, lambda f, _: f.get("channel") == "l2_data")
                started = time.monotonic()
                await ws.send_json({"type": "subscribe", "channel": "heartbeats", "product_ids": []})
                frames = await frames_until(ws, lambda f, seen: sum(x["channel"] == "heartbeats" for x in seen) >= 2)
                beats = [e["heartbeat_counter"] for f in frames if f["channel"] == "heartbeats" for e in f["events"]]
                assert beats == [1, 2] and time.monotonic() - started >= 1.0
                assert not [f for f in early if f.get("channel") == "heartbeats"]
                (conn,) = lx.hub.connections
            await asyncio.sleep(0)  # let the server see the close
            deadline = time.monotonic() + 10
            while conn in lx.hub.connections and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            counted = conn.heartbeats
            await asyncio.sleep(1.5)
            assert conn.closed and conn.heartbeats == counted, "heartbeats went on after the connection closed"

    asyncio.run(asyncio.wait_for(body(), 60))


def test_kraken_heartbeats_once_subscribed():
    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=5, seed=2)) as lx:
            lx.freeze()
            async with aiohttp.ClientSession() as http, http.ws_connect(lx.ws_url + "/v2") as ws:
                status = await ws.receive_json(timeout=15)
                assert status["channel"] == "status"
                await asyncio.sleep(1.5)  # a second and a half without a subscription: no heartbeat yet
                await ws.send_json({"method": "subscribe", "params": {"channel": "trade", "symbol": SYMBOLS},
                                    "req_id": 1})
                frames = await frames_until(ws, lambda f, seen: sum(x.get("channel") == "heartbeat"
                                                                    for x in seen) >= 2)
                first = frames[0]
                assert first.get("method") == "subscribe" and first["success"], first

    asyncio.run(asyncio.wait_for(body(), 60))
