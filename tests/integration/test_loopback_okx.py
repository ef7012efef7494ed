"""Unmodified ccxt.pro okx against the loopback exchange's OKX v5 public protocol."""
from __future__ import annotations

import json

import aiohttp
import ccxt
import pytest

from fluxforge.loopback import LoopbackExchange, SimOptions
from loopback_support import ccxt_client, run, watch_until

from tests.reference.exchange_book import okx_checksum

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
BTC = "BTC/USDT"


def test_okx_books_trades_tickers_for_several_symbols():
    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=30, ticker_interval=0.2, seed=11)) as lx:
            async with ccxt_client(lx, "okx") as ex:
                assert sorted(await ex.load_markets()) == SYMBOLS
                seen = {s: 0 for s in SYMBOLS}

                def enough(ob):
                    seen[ob["symbol"]] += 1
                    return min(seen.values()) >= 10

                await watch_until(lambda: ex.watch_order_book_for_symbols(SYMBOLS), enough, 1000)
                trades = await watch_until(lambda: ex.watch_trades_for_symbols(SYMBOLS), lambda t: len(t) > 0)
                assert trades[-1]["symbol"] in SYMBOLS and trades[-1]["side"] in ("buy", "sell")
                ticker = await ex.watch_ticker("ETH/USDT")
                assert ticker["bid"] < ticker["ask"] and ticker["last"] > 0
                lx.freeze()
                for symbol in SYMBOLS:
                    book = lx.source.books[symbol]
                    ob = await watch_until(lambda s=symbol: ex.watch_order_book(s),
                                           lambda o, s=symbol: o["nonce"] == lx.source.books[s].last_update_id) \
                        if ex.orderbooks[symbol]["nonce"] != book.last_update_id else ex.orderbooks[symbol]
                    last_id, bids, asks = book.snapshot()
                    assert [list(x) for x in ob["bids"]] == [[float(p), float(q)] for p, q in bids]
                    assert [list(x) for x in ob["asks"]] == [[float(p), float(q)] for p, q in asks]
                stream = lx.sent.stream("okx", BTC, "orderbook")
                assert stream.snapshots and stream.ids == sorted(stream.ids) and not stream.dropped

    run(body())


def test_okx_gap_raises_invalid_nonce_then_resubscribe_gets_a_new_snapshot():
    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=20, seed=12)) as lx:
            async with ccxt_client(lx, "okx") as ex:
                for _ in range(3):
                    await ex.watch_order_book(BTC)
                lx.faults.gap(BTC)
                with pytest.raises(ccxt.InvalidNonce):
                    await watch_until(lambda: ex.watch_order_book(BTC), lambda ob: False, 100)
                ob = await ex.watch_order_book(BTC)  # unsubscribe + subscribe: a fresh WS snapshot
                stream = lx.sent.stream("okx", BTC, "orderbook")
                assert len(stream.snapshots) == 2 and ob["nonce"] >= stream.snapshots[1] > stream.dropped[0][1]

    run(body())


def test_okx_raw_protocol_ping_checksum_and_errors():
    async def body():
        async with LoopbackExchange("sim", [BTC], sim=SimOptions(rate=20, seed=13)) as lx:
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(f"{lx.ws_url}/ws/v5/public") as ws:
                    await ws.send_str("ping")
                    assert await ws.receive_str(timeout=10) == "pong"
                    await ws.send_str(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "NOPE-USDT"}]}))
                    error = json.loads(await ws.receive_str(timeout=10))
                    assert error["event"] == "error" and error["code"] == "60018"
                    await ws.send_str(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
                    assert json.loads(await ws.receive_str(timeout=10))["event"] == "subscribe"
                    snapshot = json.loads(await ws.receive_str(timeout=10))
                    assert snapshot["action"] == "snapshot" and snapshot["data"][0]["prevSeqId"] == -1
                    seq = snapshot["data"][0]["seqId"]
                    bids = {float(p): float(q) for p, q, *_ in snapshot["data"][0]["bids"]}
                    asks = {float(p): float(q) for p, q, *_ in snapshot["data"][0]["asks"]}
                    for _ in range(20):
                        update = json.loads(await ws.receive_str(timeout=10))["data"][0]
                        assert update["prevSeqId"] == seq
                        seq = update["seqId"]
                        for side, levels in ((bids, update["bids"]), (asks, update["asks"])):
                            for p, q, *_ in levels:
                                side.pop(float(p), None) if float(q) == 0 else side.__setitem__(float(p), float(q))
                        # OKX's documented CRC32 of the top 25 levels, decimals as OKX writes them
                        assert update["checksum"] == okx_checksum(bids, asks)

    run(body())
