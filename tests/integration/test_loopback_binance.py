"""Unmodified ccxt.pro binance against the loopback exchange's Binance spot protocol (sim mode)."""
from __future__ import annotations

import aiohttp

from fluxforge.loopback import LoopbackExchange, SimOptions
from loopback_support import ccxt_client, run, watch_until

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def book_levels(levels):
    return [[float(p), float(q)] for p, q in levels]


def test_markets_and_rest_snapshot_match_the_server_book():
    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=20, seed=1)) as lx:
            async with ccxt_client(lx) as ex:
                markets = await ex.load_markets()
                assert sorted(markets) == sorted(SYMBOLS)
                assert markets["BTC/USDT"]["spot"] and markets["BTC/USDT"]["precision"]["price"] == 0.01
                lx.freeze()
                book = await ex.fetch_order_book("ETH/USDT", 1000)
                last_id, bids, asks = lx.source.books["ETH/USDT"].snapshot()
                assert book["nonce"] == last_id
                assert book["bids"] == book_levels(bids) and book["asks"] == book_levels(asks)
                assert book["bids"][0][0] < book["asks"][0][0]

    run(body())


def test_order_books_for_several_symbols_stay_identical_to_the_server():
    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=50, seed=2)) as lx:
            async with ccxt_client(lx) as ex:
                seen: dict[str, list[int]] = {s: [] for s in SYMBOLS}

                def enough(ob):
                    seen[ob["symbol"]].append(ob["nonce"])
                    return all(len(v) >= 20 for v in seen.values())

                await watch_until(lambda: ex.watch_order_book_for_symbols(SYMBOLS), enough, 2000)
                for nonces in seen.values():
                    assert nonces == sorted(nonces)
                lx.freeze()
                for symbol in SYMBOLS:  # drain what was queued, then the books must be equal
                    server = lx.source.books[symbol]
                    if ex.orderbooks[symbol]["nonce"] != server.last_update_id:
                        await watch_until(lambda s=symbol: ex.watch_order_book(s),
                                          lambda ob, s=symbol: ob["nonce"] == lx.source.books[s].last_update_id)
                    last_id, bids, asks = server.snapshot()
                    ob = ex.orderbooks[symbol]
                    assert ob["nonce"] == last_id
                    assert [list(x) for x in ob["bids"]] == book_levels(bids)
                    assert [list(x) for x in ob["asks"]] == book_levels(asks)
                sent = lx.sent.stream("binance", "BTC/USDT", "orderbook")
                assert sent.messages > 20 and not sent.dropped

    run(body())


def test_trades_for_symbols_arrive_in_order_and_match_what_was_sent():
    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=40, trades_per_update=1.0, seed=3)) as lx:
            async with ccxt_client(lx) as ex:
                got: dict[str, dict] = {}

                def enough(trades):
                    for t in trades:
                        got.setdefault(t["symbol"], {})[int(t["id"])] = t
                    return len(got) == 2 and all(len(v) >= 15 for v in got.values())

                await watch_until(lambda: ex.watch_trades_for_symbols(SYMBOLS[:2]), enough, 2000)
                for symbol, trades in got.items():
                    sent = lx.sent.stream("binance", symbol, "trades").ids
                    ids = sorted(trades)
                    assert set(ids) <= set(sent)
                    start = sent.index(ids[0])  # what arrived is a contiguous run of what was sent
                    assert sent[start:start + len(ids)] == ids
                    for t in trades.values():
                        assert t["side"] in ("buy", "sell") and t["price"] > 0 and t["amount"] > 0
                        assert t["timestamp"] > 1_600_000_000_000

    run(body())


def test_tickers_full_and_mini_forms():
    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=20, ticker_interval=0.2, seed=4)) as lx:
            async with ccxt_client(lx) as ex:
                full = await ex.watch_ticker("BTC/USDT", {"name": "ticker"})
                assert full["symbol"] == "BTC/USDT"
                assert full["bid"] < full["ask"] and full["last"] > 0 and full["baseVolume"] >= 0
                mini = await watch_until(lambda: ex.watch_tickers(SYMBOLS[1:]),
                                         lambda t: len(t) >= 1 and all(v["close"] for v in t.values()))
                assert set(mini) <= set(SYMBOLS[1:])
                ticker = lx.sent.stream("binance", "BTC/USDT", "ticker")
                assert ticker.messages >= 1

    run(body())


def test_stats_endpoint_reports_what_was_sent():
    async def body():
        async with LoopbackExchange("sim", SYMBOLS[:1], sim=SimOptions(rate=50, seed=5)) as lx:
            async with ccxt_client(lx) as ex:
                await watch_until(lambda: ex.watch_order_book("BTC/USDT"), lambda ob: ob["nonce"] and True, 50)
                for _ in range(10):
                    await ex.watch_order_book("BTC/USDT")
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{lx.url}/_loopback/stats?detail=1") as resp:
                    stats = await resp.json()
                async with http.get(f"{lx.url}/api/v3/depth?symbol=NOPE") as resp:
                    assert resp.status == 400 and (await resp.json())["code"] == -1121
            book = stats["protocols"]["binance"]["BTC/USDT"]["orderbook"]
            local = lx.sent.stream("binance", "BTC/USDT", "orderbook")
            assert book["messages"] >= 10 and book["ids"] == local.ids[:len(book["ids"])]
            assert book["ids"] == sorted(book["ids"]) and len(book["sent_ns"]) == len(book["ids"])
            assert stats["snapshots"] >= 1 and stats["subscribes"] >= 1

    run(body())


def test_combined_stream_url_carries_depth_aggtrade_and_bookticker_wrapped():
    """cryptofeed's form: `/stream?streams=a/b/c`, every payload wrapped {"stream", "data"}."""
    names = ["btcusdt@depth@100ms", "btcusdt@aggTrade", "btcusdt@bookTicker", "ethusdt@aggTrade"]

    async def body():
        sim = SimOptions(rate=40, trades_per_update=1.0, ticker_interval=0.2, seed=6)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{lx.url}/stream?streams=btcusdt@trade/nope@trade") as resp:
                    assert resp.status == 400 and "nope@trade" in (await resp.json())["msg"]
                assert not lx.hub.subscribers.get(("BTC/USDT", "trades"))
                got: dict[str, list[dict]] = {n: [] for n in names}
                async with http.ws_connect(f"{lx.ws_url}/stream?streams={'/'.join(names)}") as ws:
                    while not all(len(v) >= 3 for v in got.values()):
                        frame = await ws.receive_json()
                        assert set(frame) == {"stream", "data"}
                        got[frame["stream"]].append(frame["data"])
            depth, agg, book_ticker = got[names[0]], got[names[1]], got[names[2]]
            assert {d["e"] for d in depth} == {"depthUpdate"} and {d["s"] for d in depth} == {"BTCUSDT"}
            assert [d["u"] for d in depth] == lx.sent.stream("binance", "BTC/USDT", "orderbook").ids[:len(depth)]
            sent_trades = lx.sent.stream("binance", "BTC/USDT", "trades").ids
            assert [a["a"] for a in agg] == sent_trades[:len(agg)]
            assert all(a["e"] == "aggTrade" and a["f"] == a["l"] == a["a"] and float(a["p"]) > 0 for a in agg)
            assert {a["s"] for a in got[names[3]]} == {"ETHUSDT"}
            for t in book_ticker:  # spot bookTicker: no event type, best bid below best ask
                assert set(t) == {"u", "s", "b", "B", "a", "A"} and float(t["b"]) < float(t["a"])

    run(body())
