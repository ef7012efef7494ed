"""The loopback's Binance partial book depth streams (`<sym>@depth<N>[@100ms]`), sim and replay.

Payload exactly as Binance documents it: `{"lastUpdateId", "bids", "asks"}`, the top N levels
a side, nothing else (no event type, no symbol).  Every frame is compared with the book the
loopback held at that update id (computed here from the hub's book, independently of the
protocol code), and the sent-log lists each frame's id as a served snapshot.
"""
from __future__ import annotations

import asyncio
import json

import aiohttp
from loopback_support import run
from test_loopback_replay import write_capture

from fluxforge.loopback import LoopbackExchange, SimOptions


class TopBooks:
    """The hub's authoritative top-`depth` book of every symbol after every update, by update id."""

    def __init__(self, lx, depth: int):
        self.depth = depth
        self.books: dict[tuple[str, int], tuple[list, list]] = {}
        self.times: dict[tuple[str, int], int] = {}  # the book's exchange time (ms) at that id
        for book in lx.hub.books.values():
            self._record(book)
        lx.hub.book_observers.append(lambda update, book: self._record(book))

    def _record(self, book) -> None:
        bids = [list(book.bids[k]) for k in sorted(book.bids, reverse=True)[:self.depth]]
        asks = [list(book.asks[k]) for k in sorted(book.asks)[:self.depth]]
        self.books[(book.symbol, book.last_update_id)] = (bids, asks)
        self.times[(book.symbol, book.last_update_id)] = book.ts_ms


async def frames(ws, count: int) -> list[dict]:
    out = []
    while len(out) < count:
        msg = await asyncio.wait_for(ws.receive(), 20)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        data = json.loads(msg.data)
        if "result" in data:  # the SUBSCRIBE ack
            continue
        out.append(data)
    return out


def check(frames_: list[dict], top: TopBooks, symbol: str, depth: int) -> None:
    for f in frames_:
        assert set(f) == {"lastUpdateId", "bids", "asks"}, f
        assert len(f["bids"]) == depth and len(f["asks"]) == depth
        assert (f["bids"], f["asks"]) == top.books[(symbol, f["lastUpdateId"])]
    ids = [f["lastUpdateId"] for f in frames_]
    assert ids == sorted(set(ids))


def test_sim_raw_stream_url_and_subscribe_serve_top_n_snapshots():
    async def body():
        async with LoopbackExchange("sim", ["BTC/USDT", "ETH/USDT"], sim=SimOptions(rate=40, seed=7)) as lx:
            top5, top20 = TopBooks(lx, 5), TopBooks(lx, 20)
            async with aiohttp.ClientSession() as http:
                # the raw-stream URL form: the stream is named by the URL, no SUBSCRIBE
                raw = await http.ws_connect(f"{lx.ws_url}/ws/btcusdt@depth5@100ms")
                sub = await http.ws_connect(f"{lx.ws_url}/ws")
                await sub.send_json({"method": "SUBSCRIBE", "params": ["ethusdt@depth20"], "id": 1})
                btc, eth = await frames(raw, 15), await frames(sub, 15)
                check(btc, top5, "BTC/USDT", 5)
                check(eth, top20, "ETH/USDT", 20)
                # an undocumented depth is refused, nothing subscribed
                await sub.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@depth7"], "id": 2})
                while True:
                    reply = json.loads((await asyncio.wait_for(sub.receive(), 20)).data)
                    if reply.get("id") == 2:
                        break
                assert "unknown stream 'btcusdt@depth7'" in reply["error"]["msg"]
                lx.freeze()
                await raw.close()
                await sub.close()
            snapshots = lx.sent.stream("binance", "BTC/USDT", "orderbook").snapshots
            assert snapshots[:15] == [f["lastUpdateId"] for f in btc]  # the sent-log holds every frame sent
            assert not lx.sent.stream("binance", "BTC/USDT", "orderbook").ids  # no diff was sent

    run(body())


def test_replay_serves_the_capture_book_top_n(tmp_path):
    path = write_capture(tmp_path / "abcusdt.txt")

    async def body():
        lx = LoopbackExchange("replay", replay_files=[path], speed=0)
        lx.freeze()  # hold the replay until the client is subscribed
        async with lx:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"{lx.ws_url}/ws/abcusdt@depth5")
                while not lx.hub.subscribers.get(("ABC/USDT", "orderbook")):
                    await asyncio.sleep(0.01)
                lx.freeze(False)
                got = await frames(ws, 2)
                await ws.close()
        # the capture: snapshot 102, then diffs 100..104 and 105..107 (test_loopback_replay.write_capture)
        assert got == [
            {"lastUpdateId": 104, "bids": [["10.01", "1"], ["10.00", "5"], ["9.99", "2"]], "asks": [["10.06", "4"]]},
            {"lastUpdateId": 107, "bids": [["10.01", "1"], ["10.00", "5"]], "asks": [["10.06", "3.5"], ["10.10", "1"]]},
        ]
        assert lx.sent.stream("binance", "ABC/USDT", "orderbook").snapshots == [104, 107]

    run(body())


def test_okx_books5_pushes_the_top_5_without_action_or_checksum():
    async def body():
        async with LoopbackExchange("sim", ["BTC/USDT"], sim=SimOptions(rate=40, seed=8)) as lx:
            top = TopBooks(lx, 5)
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"{lx.ws_url}/ws/v5/public")
                await ws.send_json({"op": "subscribe", "args": [{"channel": "books5", "instId": "BTC-USDT"}]})
                got = []
                while len(got) < 15:
                    msg = json.loads((await asyncio.wait_for(ws.receive(), 20)).data)
                    if msg.get("event") == "subscribe":
                        continue
                    assert set(msg) == {"arg", "data"} and msg["arg"] == {"channel": "books5", "instId": "BTC-USDT"}
                    got.append(msg["data"][0])
                lx.freeze()
                await ws.close()
            for d in got:
                assert set(d) == {"asks", "bids", "instId", "ts", "seqId"}
                bids, asks = top.books[("BTC/USDT", d["seqId"])]
                assert [[float(p), float(q)] for p, q, *_ in d["bids"]] == [[float(p), float(q)] for p, q in bids]
                assert [[float(p), float(q)] for p, q, *_ in d["asks"]] == [[float(p), float(q)] for p, q in asks]
                assert len(d["bids"]) == len(d["asks"]) == 5
                assert int(d["ts"]) == (top.times[("BTC/USDT", d["seqId"])] or int(d["ts"]))  # 0: never updated
            assert lx.sent.stream("okx", "BTC/USDT", "orderbook").snapshots[:15] == [d["seqId"] for d in got]

    run(body())
