"""Replay mode: captures in the `<ns> <json>` format reach unmodified ccxt.pro exactly.

The book ccxt returns is compared with the capture's book (Binance's documented
rule applied to the file) at EVERY update ccxt returns and at FULL depth.  ccxt
trims its book to `watchOrderBookLimit` on every return (default 1000 levels, which
the real BTCUSDT capture moves through, leaving holes); the client here keeps
5000 so that ccxt's book is the whole book and any difference is the replay's.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from fluxforge.loopback import LoopbackExchange
from fluxforge.loopback.capture import iter_capture
from book_truth import BookTruth
from loopback_support import ccxt_client, run

from tests.reference.exchange_book import LiveFingerprint, book_fingerprint

CCXT_BOOK_LIMIT = 5000  # Binance's largest REST depth: ccxt's trimming never bites


def reference_books(path) -> tuple[dict[int, int], tuple[int, list, list]]:
    """Binance's documented sync rule applied to a capture, independently of the loopback.

    Returns ({update id: fingerprint of the whole book after it}, (last id, bids, asks) at the end)."""
    lines = [line.message for line in iter_capture(path) if hasattr(line, "message")]
    snapshot = next(m for m in lines if "lastUpdateId" in m)
    last = snapshot["lastUpdateId"]
    book = LiveFingerprint({float(p): float(q) for p, q in snapshot["bids"]},
                           {float(p): float(q) for p, q in snapshot["asks"]})
    prints = {last: book.value}
    for m in lines:
        d = m.get("data", {})
        if d.get("e") != "depthUpdate" or d["u"] <= last:
            continue
        assert d["U"] <= last + 1, "capture has a gap"
        for side, levels in ((0, d["b"]), (1, d["a"])):
            for p, q in levels:
                book.set(side, float(p), float(q))
        last = d["u"]
        prints[last] = book.value
    bids, asks = book.sides
    return prints, (last, [[p, bids[p]] for p in sorted(bids, reverse=True)], [[p, asks[p]] for p in sorted(asks)])


def reference_book(path) -> tuple[int, list, list]:
    return reference_books(path)[1]


def ccxt_fingerprint(book) -> int:
    return book_fingerprint({p: q for p, q in book["bids"]}, {p: q for p, q in book["asks"]})


def capture_trade_ids(path) -> list[int]:
    return [line.message["data"]["t"] for line in iter_capture(path)
            if hasattr(line, "message") and line.message.get("data", {}).get("e") == "trade"]


async def replay_through_ccxt(files, symbols, exchange="binance"):
    """Replay `files` to a ccxt client subscribed to books and trades; return (lx, books, trades, seen).

    `seen[symbol]` holds (nonce, fingerprint) of every book a `watch_order_book` loop returned."""
    lx = LoopbackExchange("replay", replay_files=files, speed=0)
    lx.freeze()  # hold the replay until the client has its snapshots
    async with lx:
        lx.truth = BookTruth(lx, protocols=("binance",))  # the loopback's own book after every update
        async with ccxt_client(lx, exchange) as ex:
            ex.options["watchOrderBookLimit"] = CCXT_BOOK_LIMIT
            trades: dict[str, list] = {s: [] for s in symbols}
            seen: dict[str, list] = {s: [] for s in symbols}
            for s in symbols:
                await ex.watch_order_book(s, CCXT_BOOK_LIMIT)
            tasks = [asyncio.create_task(collect_trades(ex, s, trades[s])) for s in symbols]
            tasks += [asyncio.create_task(watch_books(ex, s, seen[s])) for s in symbols]
            await asyncio.sleep(0.2)  # trade subscriptions acked
            lx.freeze(False)
            # the watch loops wait forever once the replay has ended: poll ccxt's books for the end
            while not lx.source.finished or any(
                    ex.orderbooks[s]["nonce"] != lx.source.books[s].last_update_id for s in symbols):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # last trades in flight
            for t in tasks:
                t.cancel()
            books = {s: (ex.orderbooks[s]["nonce"], [list(x) for x in ex.orderbooks[s].limit()["bids"]],
                         [list(x) for x in ex.orderbooks[s]["asks"]]) for s in symbols}
    return lx, books, trades, seen


async def watch_books(ex, symbol, out):
    while True:
        book = await ex.watch_order_book(symbol, CCXT_BOOK_LIMIT)  # trimmed by ccxt, as every consumer sees it
        out.append((book["nonce"], ccxt_fingerprint(book)))


async def collect_trades(ex, symbol, out):
    while True:
        batch = await ex.watch_trades(symbol)
        out.extend(int(t["id"]) for t in batch if not out or int(t["id"]) > out[-1])


def write_capture(path, symbol_id="ABCUSDT"):
    """A small synthetic capture: a diff before the snapshot that straddles it, trades, junk."""
    s = symbol_id.lower()
    base = 1_700_000_000_000_000_000
    lines = [
        (0, {"stream": f"{s}@depth@100ms", "data": {"e": "depthUpdate", "E": 1, "s": symbol_id, "U": 90, "u": 99,
                                                    "b": [["10.00", "9"]], "a": []}}),
        (1, {"stream": f"{s}@depth@100ms", "data": {"e": "depthUpdate", "E": 2, "s": symbol_id, "U": 100, "u": 104,
                                                    "b": [["10.01", "1"]], "a": [["10.05", "0"]]}}),
        (2, {"lastUpdateId": 102, "bids": [["10.00", "5"], ["9.99", "2"]],
             "asks": [["10.05", "3"], ["10.06", "4"]]}),
        (3, {"stream": f"{s}@bookTicker", "data": {"u": 103, "s": symbol_id, "b": "10.01", "B": "1",
                                                   "a": "10.06", "A": "4"}}),
        (4, {"stream": f"{s}@trade", "data": {"e": "trade", "E": 5, "s": symbol_id, "t": 7, "p": "10.06",
                                              "q": "0.5", "T": 5, "m": False}}),
        (5, {"stream": f"{s}@depth@100ms", "data": {"e": "depthUpdate", "E": 6, "s": symbol_id, "U": 105, "u": 107,
                                                    "b": [["9.99", "0"]], "a": [["10.06", "3.5"], ["10.10", "1"]]}}),
        (6, {"stream": f"{s}@trade", "data": {"e": "trade", "E": 7, "s": symbol_id, "t": 8, "p": "10.01",
                                              "q": "0.25", "T": 7, "m": True}}),
    ]
    text = "".join(f"{base + i * 100_000_000} {json.dumps(m)}\n" for i, m in lines)
    path.write_text(text + "this is not a capture line\n")
    return path


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_synthetic_capture_replays_with_binance_sync_rule(tmp_path, exchange):
    path = write_capture(tmp_path / "abcusdt.txt")

    async def body():
        lx, books, trades, seen = await replay_through_ccxt([path], ["ABC/USDT"], exchange)
        assert books["ABC/USDT"] == reference_book(path)
        prints = reference_books(path)[0]
        assert seen["ABC/USDT"] and all(prints[n] == fp for n, fp in seen["ABC/USDT"])
        assert all(lx.truth.prints[("binance", "ABC/USDT")][u] == fp for u, fp in prints.items())
        assert books["ABC/USDT"][0] == 107 and books["ABC/USDT"][1][0] == [10.01, 1.0]
        assert trades["ABC/USDT"] == [7, 8]
        status = lx.stats()["source"]
        assert status["finished"] and status["bad_lines"] == 1 and status["capture_gaps"] == 0
        assert status["first_bad_lines"][0].startswith(f"{path}:8: ")
        sent = lx.sent.stream(exchange, "ABC/USDT", "orderbook").ids
        assert sent == [104, 107]  # u=99 predates the snapshot; 100..104 straddles it

    run(body())


def test_replay_speed_up_paces_by_capture_time(tmp_path):
    path = write_capture(tmp_path / "abcusdt.txt")  # 0.6 s of capture time

    async def body():
        loop = asyncio.get_running_loop()
        async with LoopbackExchange("replay", replay_files=[path], speed=2.0) as lx:
            started = loop.time()
            while not lx.source.finished:
                await asyncio.sleep(0.02)
            assert loop.time() - started >= 0.6 / 2.0

    run(body())


def test_replay_rejects_files_without_a_snapshot(tmp_path):
    bad = tmp_path / "nosnap.txt"
    bad.write_text('1 {"stream":"abcusdt@trade","data":{"e":"trade","s":"ABCUSDT","t":1}}\n')
    with pytest.raises(ValueError, match="snapshot"):
        LoopbackExchange("replay", replay_files=[bad])
    with pytest.raises(ValueError, match="not found"):
        LoopbackExchange("replay", replay_files=[tmp_path / "missing.gz"])


@pytest.mark.realdata
def test_real_binance_captures_replay_exactly(shared_capture):
    files = [shared_capture / "btcusdt_20240808.gz", shared_capture / "ethusdt_20240808.gz"]

    async def body():
        lx, books, trades, seen = await replay_through_ccxt(files, ["BTC/USDT", "ETH/USDT"])
        for path, symbol in zip(files, ["BTC/USDT", "ETH/USDT"]):
            prints, final = reference_books(path)
            assert books[symbol] == final  # the whole book, every level
            # the book the loopback serves equals the capture's at every update, whole
            served = lx.truth.prints[("binance", symbol)]
            assert all(served[u] == fp for u, fp in prints.items()) and len(prints) > 3000
            # and every book ccxt returned (a watch loop coalesces), whole, equals the capture's at its update
            assert len(seen[symbol]) > 10
            bad = [n for n, fp in seen[symbol] if prints.get(n) != fp]
            assert not bad, f"{symbol}: ccxt's book differs from the capture's at update ids {bad[:5]}"
            ids = capture_trade_ids(path)
            assert trades[symbol] == ids[ids.index(trades[symbol][0]):]  # every trade since subscribing
            assert len(trades[symbol]) > 0.99 * len(ids)
        assert lx.stats()["source"]["capture_gaps"] == 0

    run(body(), timeout=150)
