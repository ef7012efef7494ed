"""OKX v5 public wire protocol, as much of it as unmodified ccxt.pro `okx` uses for market data.

Why a second protocol: it proves the collector is not Binance-shaped.  OKX
differs where it matters: the order book snapshot comes over the WebSocket
right after the subscribe ack (no REST), diffs chain by `prevSeqId` -> `seqId`
(ccxt raises InvalidNonce on a break, then unsubscribes and subscribes again),
each push carries a CRC32 `checksum` of the top 25 levels, and keep-alive is a
text `ping` answered by `pong`.  The `books` channel serves a 400-level book:
updates carry the changes of that window (`book_window.TopWindow`), so snapshot
+ updates rebuild exactly what the checksum covers.  Decimals go out the way
OKX writes them, without trailing zeros ("60012.5", not "60012.50000000").
`books5` (ccxt's `watchOrderBook` with `depth: books5`) is the depth-limited channel: every
push is the top 5 levels a side with `ts` and `seqId`, no `action`, no checksum (OKX pushes
one per 100 ms when the book changed; the loopback one per change), sent-logged as snapshots.
REST: `GET /api/v5/public/instruments`, `/api/v5/market/books`, `/api/v5/public/time`.
WebSocket: `/ws/v5/public`, channels `books`, `books5`, `trades`, `tickers`.
"""
from __future__ import annotations

import heapq
import json
import time
import zlib

from aiohttp import web

from .book import BookState
from .events import BookUpdate, Event, Ticker, Trade, okx_inst_id, split_symbol
from .hub import Connection, loopback

PROTOCOL = "okx"
CHANNELS = {"books": "orderbook", "books5": "orderbook", "trades": "trades", "tickers": "ticker"}
SNAPSHOT_LEVELS = 400  # what OKX's `books` channel sends on subscribe
BOOKS5_LEVELS = 5
CHECKSUM_LEVELS = 25


def ccxt_config(base_url: str, ws_url: str) -> dict:
    """The `ccxt:` dict for ccxt.pro okx: our URLs, spot markets only (one REST call)."""
    return {"urls": {"api": {"rest": base_url, "ws": f"{ws_url}/ws/v5"}},
            "options": {"fetchMarkets": {"types": ["spot"]}, "defaultType": "spot"}}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v5/public/instruments", instruments)
    app.router.add_get("/api/v5/market/books", rest_books)
    app.router.add_get("/api/v5/public/time", server_time)
    app.router.add_get("/ws/v5/public", websocket)


def ok(data: list) -> web.Response:
    return web.json_response({"code": "0", "msg": "", "data": data})


async def server_time(request: web.Request) -> web.Response:
    return ok([{"ts": str(int(time.time() * 1000))}])


def instrument(symbol: str, tick: str) -> dict:
    base, quote = split_symbol(symbol)
    return {"instType": "SPOT", "instId": okx_inst_id(symbol), "baseCcy": base, "quoteCcy": quote,
            "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "", "optType": "", "stk": "",
            "uly": "", "instFamily": "", "listTime": "1606468572000", "expTime": "", "lever": "",
            "tickSz": tick, "lotSz": "0.00001", "minSz": "0.00001", "ctType": "", "alias": "",
            "state": "live", "maxLmtSz": "9999999999", "maxMktSz": "1000000", "category": "1"}


async def instruments(request: web.Request) -> web.Response:
    lx = loopback(request)
    await lx.rest_delay()
    if request.query.get("instType", "SPOT") != "SPOT":
        return ok([])
    return ok([instrument(s, lx.source.price_tick(s)) for s in lx.source.symbols])


async def rest_books(request: web.Request) -> web.Response:
    lx = loopback(request)
    await lx.rest_delay()
    symbol = lx.symbol_by_okx_id.get(request.query.get("instId", ""))
    if symbol is None:
        return web.json_response({"code": "51001", "msg": "Instrument ID does not exist.", "data": []})
    size = int(request.query.get("sz", "1")) if request.query.get("sz", "1").isdigit() else 1
    book = lx.source.books[symbol]
    last_id, bids, asks = book.snapshot(max(1, min(size, 400)))
    lx.sent.snapshot(PROTOCOL, symbol, last_id)
    return ok([{"bids": levels(bids), "asks": levels(asks), "ts": str(book.ts_ms or int(time.time() * 1000))}])


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(autoping=True)
    await ws.prepare(request)
    return await OkxConnection(loopback(request).hub, ws, request).serve()


def decimal(text: str) -> str:
    """A decimal string as OKX writes it: no trailing zeros, no trailing point."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def levels(side: list) -> list[list[str]]:
    return [[decimal(p), decimal(q), "0", "1"] for p, q in side]


def checksum(book: BookState) -> int:
    """OKX's CRC32 (signed) over 'bid1px:bid1sz:ask1px:ask1sz:...' of the top 25 levels."""
    bids = [book.bids[k] for k in heapq.nlargest(CHECKSUM_LEVELS, book.bids)]
    asks = [book.asks[k] for k in heapq.nsmallest(CHECKSUM_LEVELS, book.asks)]
    parts = []
    for i in range(max(len(bids), len(asks))):
        if i < len(bids):
            parts.extend(map(decimal, bids[i]))
        if i < len(asks):
            parts.extend(map(decimal, asks[i]))
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


class OkxConnection(Connection):
    protocol = PROTOCOL

    def __init__(self, hub, ws, request):
        super().__init__(hub, ws, request)
        self.lx = loopback(request)
        self.conn_id = f"{id(self) & 0xFFFFFFFF:08x}"
        self.snapshot_seq: dict[str, int] = {}  # symbol -> seqId of the snapshot not yet followed
        self.books5: set[str] = set()  # symbols subscribed as `books5`: their book frames are top-5 pushes

    def reply(self, obj: dict) -> None:
        self.send_json({**obj, "connId": self.conn_id})

    async def on_text(self, text: str) -> None:
        if text == "ping":
            self.enqueue("pong")
            return
        try:
            request = json.loads(text)
            op, args = request["op"], request["args"]
            targets = [(arg, arg["channel"], arg.get("instId")) for arg in args]
        except (ValueError, KeyError, TypeError):
            self.reply({"event": "error", "code": "60012", "msg": f"Invalid request: {text[:200]}"})
            return
        if op not in ("subscribe", "unsubscribe"):
            self.reply({"event": "error", "code": "60012", "msg": f"Invalid request: unknown op {op!r}"})
            return
        for arg, channel, inst_id in targets:
            symbol = self.lx.symbol_by_okx_id.get(inst_id)
            if channel not in CHANNELS or symbol is None:
                self.reply({"event": "error", "code": "60018",
                            "msg": f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist."})
                continue
            self.reply({"event": op, "arg": arg})
            if op == "unsubscribe":
                self.unsubscribe(symbol, CHANNELS[channel])
                if channel == "books5":
                    self.books5.discard(symbol)
                continue
            self.subscribe(symbol, CHANNELS[channel])
            self.hub.sent.subscribes += 1
            if channel == "books5":  # the current top 5 follows the ack
                self.books5.add(symbol)
                self.send_books5(symbol)
            elif channel == "books":  # the snapshot follows the ack, before any queued update
                self.hub.window(symbol, SNAPSHOT_LEVELS)
                self.send_book_snapshot(symbol)

    def send_book_snapshot(self, symbol: str) -> None:
        book = self.hub.books[symbol]
        last_id, bids, asks = book.snapshot(SNAPSHOT_LEVELS)
        self.snapshot_seq[symbol] = last_id
        data = {"asks": levels(asks), "bids": levels(bids), "ts": str(book.ts_ms or int(time.time() * 1000)),
                "checksum": checksum(book), "prevSeqId": -1, "seqId": last_id}
        frame = {"arg": {"channel": "books", "instId": okx_inst_id(symbol)}, "action": "snapshot", "data": [data]}
        self.enqueue(json.dumps(frame, separators=(",", ":")), symbol, "orderbook", last_id, snapshot=True)

    def send_books5(self, symbol: str) -> None:
        book = self.hub.books[symbol]
        last_id, bids, asks = book.snapshot(BOOKS5_LEVELS)
        inst_id = okx_inst_id(symbol)
        data = {"asks": levels(asks), "bids": levels(bids), "instId": inst_id,
                "ts": str(book.ts_ms or int(time.time() * 1000)), "seqId": last_id}
        frame = {"arg": {"channel": "books5", "instId": inst_id}, "data": [data]}
        self.enqueue(json.dumps(frame, separators=(",", ":")), symbol, "orderbook", last_id, snapshot=True)

    def deliver(self, event: Event) -> None:
        if isinstance(event, BookUpdate) and event.symbol in self.books5:
            self.send_books5(event.symbol)
        else:
            super().deliver(event)

    def encode(self, event: Event) -> str | None:
        inst_id = okx_inst_id(event.symbol)
        if isinstance(event, BookUpdate):
            prev_seq = event.first_id - 1
            snapshot_seq = self.snapshot_seq.pop(event.symbol, None)
            if snapshot_seq is not None and prev_seq < snapshot_seq <= event.last_id:
                prev_seq = snapshot_seq  # a diff straddling the snapshot (replayed captures) chains to it
            bids, asks = self.hub.windows[event.symbol].diff  # the changes of the 400-level book
            data = {"asks": levels(asks), "bids": levels(bids), "ts": str(event.ts_ms),
                    "checksum": checksum(self.hub.books[event.symbol]),
                    "prevSeqId": prev_seq, "seqId": event.last_id}
            message = {"arg": {"channel": "books", "instId": inst_id}, "action": "update", "data": [data]}
        elif isinstance(event, Trade):
            message = {"arg": {"channel": "trades", "instId": inst_id},
                       "data": [{"instId": inst_id, "tradeId": str(event.trade_id), "px": event.price,
                                 "sz": event.amount, "side": event.side, "ts": str(event.ts_ms), "count": "1"}]}
        elif isinstance(event, Ticker):
            message = {"arg": {"channel": "tickers", "instId": inst_id},
                       "data": [{"instType": "SPOT", "instId": inst_id, "last": repr(event.last),
                                 "lastSz": repr(event.last_qty), "askPx": event.ask, "askSz": event.ask_qty,
                                 "bidPx": event.bid, "bidSz": event.bid_qty, "open24h": repr(event.open),
                                 "high24h": repr(event.high), "low24h": repr(event.low),
                                 "volCcy24h": f"{event.quote_volume:.8f}", "vol24h": f"{event.base_volume:.8f}",
                                 "sodUtc0": repr(event.open), "sodUtc8": repr(event.open), "ts": str(event.ts_ms)}]}
        else:
            return None
        return json.dumps(message, separators=(",", ":"))
