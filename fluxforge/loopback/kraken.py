"""Kraken spot WebSocket v2 wire protocol, as much of it as unmodified ccxt.pro `kraken` uses for market data.

Why a third book model: Kraken's `book` channel has no sequence numbers at all.
A client subscribes with a `depth` (10, 25, 100, 500, 1000; ccxt's default 10),
gets a snapshot of that many levels, then updates that keep *that window* right:
a level entering the window (because one above it went away) is sent as an
insert; one pushed out gets no delete (the client truncates to its depth).
Every book message carries a CRC32 `checksum` of the top 10 levels, the only
way to notice a lost message.  So this
module keeps, per connection and symbol, the window the client has been told,
and sends the difference to the true window after each update.  A gap fault (a
withheld diff, noticed here as a jump in the neutral update ids) loses exactly
that diff's own levels: the client's book is then wrong and the next checksum
says so.  The sent-log records a Kraken book message by its checksum (there is
no update id), so a test can check every stored book row against what was sent.

REST (ccxt's `load_markets`): `GET /0/public/Assets`, `/0/public/AssetPairs`, `/0/public/Time`.
WebSocket: `/v2`: a `status` message on connect; `{"method":"subscribe"|"unsubscribe",
"params":{"channel":"book"|"trade"|"ticker","symbol":[...],...},"req_id":N}` acked
once per symbol; `{"method":"ping"}` answered by `pong`; `{"channel":"heartbeat"}`
every second while subscribed.  Prices and sizes are JSON numbers, as Kraken sends.
Not modelled: the trade and ticker snapshots Kraken sends on subscribe (ccxt
treats them as updates; the loopback sends updates only).
"""
from __future__ import annotations

import json
import time
import zlib
from datetime import datetime, timezone

from aiohttp import web

from .book import BookState
from .events import BookUpdate, Event, Ticker, Trade, binance_id, split_symbol
from .hub import Connection, loopback

PROTOCOL = "kraken"
CHANNELS = {"book": "orderbook", "trade": "trades", "ticker": "ticker"}
DEPTHS = (10, 25, 100, 500, 1000)
CHECKSUM_LEVELS = 10
LOT_DECIMALS = 8
HEARTBEAT_SECONDS = 1.0


def ccxt_config(base_url: str, ws_url: str) -> dict:
    """The `ccxt:` dict for ccxt.pro kraken: our REST root and WebSocket v2 URL."""
    return {"urls": {"api": {"public": base_url, "ws": {"public": f"{ws_url}/v1", "publicV2": f"{ws_url}/v2"}}}}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/0/public/Assets", assets)
    app.router.add_get("/0/public/AssetPairs", asset_pairs)
    app.router.add_get("/0/public/Time", server_time)
    app.router.add_get("/v2", websocket)


def result(obj) -> web.Response:
    return web.json_response({"error": [], "result": obj})


def iso(ts_ms: int) -> str:
    """Kraken's RFC 3339 timestamp with microseconds, e.g. 2023-10-06T17:35:55.440000Z."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decimals(tick: str) -> int:
    return len(tick.partition(".")[2])


async def server_time(request: web.Request) -> web.Response:
    now = time.time()
    return result({"unixtime": int(now), "rfc1123": time.strftime("%a, %d %b %y %H:%M:%S +0000", time.gmtime(now))})


async def assets(request: web.Request) -> web.Response:
    lx = loopback(request)
    await lx.rest_delay()
    codes = sorted({c for s in lx.source.symbols for c in split_symbol(s)})
    return result({c: {"aclass": "currency", "altname": c, "decimals": LOT_DECIMALS, "display_decimals": 5,
                       "status": "enabled"} for c in codes})


def asset_pair(symbol: str, tick: str) -> dict:
    base, quote = split_symbol(symbol)
    return {"altname": base + quote, "wsname": f"{base}/{quote}", "aclass_base": "currency", "base": base,
            "aclass_quote": "currency", "quote": quote, "lot": "unit", "cost_decimals": 5,
            "pair_decimals": decimals(tick), "lot_decimals": LOT_DECIMALS, "lot_multiplier": 1,
            "leverage_buy": [], "leverage_sell": [], "fees": [[0, 0.26], [50000, 0.24]],
            "fees_maker": [[0, 0.16], [50000, 0.14]], "fee_volume_currency": "ZUSD", "margin_call": 80,
            "margin_stop": 40, "ordermin": "0.0001", "costmin": "0.5", "tick_size": tick, "status": "online"}


async def asset_pairs(request: web.Request) -> web.Response:
    lx = loopback(request)
    await lx.rest_delay()
    return result({binance_id(s): asset_pair(s, lx.source.price_tick(s)) for s in lx.source.symbols})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(autoping=True)
    await ws.prepare(request)
    return await KrakenConnection(loopback(request).hub, ws, request).serve()


def top(book: BookState, depth: int) -> tuple[dict, dict]:
    """The book's best `depth` levels a side, as {float price: (price, qty)}."""
    _, bids, asks = book.snapshot(depth)
    return {float(p): (p, q) for p, q in bids}, {float(p): (p, q) for p, q in asks}


def checksum_field(value: str, places: int) -> str:
    """Kraken's checksum form of a number: fixed `places` decimals, point and leading zeros removed."""
    return f"{float(value):.{places}f}".replace(".", "").lstrip("0")


def checksum(bids: list, asks: list, price_places: int) -> int:
    """Kraken v2's CRC32 (unsigned) of the top 10 asks (ascending) then the top 10 bids (descending)."""
    parts = [checksum_field(p, price_places) + checksum_field(q, LOT_DECIMALS)
             for p, q in asks[:CHECKSUM_LEVELS] + bids[:CHECKSUM_LEVELS]]
    return zlib.crc32("".join(parts).encode())


def wire_levels(levels) -> list[dict]:
    return [{"price": float(p), "qty": float(q)} for p, q in levels]


class BookView:
    """What one client has been told of one symbol's book: a window of `depth` levels a side."""

    __slots__ = ("depth", "bids", "asks", "next_id", "unnoticed")

    def __init__(self, depth: int, book: BookState):
        self.depth = depth
        self.bids, self.asks = top(book, depth)
        self.next_id = book.last_update_id + 1
        self.unnoticed = False  # the last advance followed a withheld diff the client cannot notice

    def advance(self, book: BookState, update: BookUpdate) -> tuple[list, list]:
        """The (bids, asks) changes to send for `update`; only its own levels if diffs were withheld before it."""
        lost = update.first_id > self.next_id
        self.next_id = update.last_id + 1
        new_bids, new_asks = top(book, self.depth)
        changes = []
        for old, new, levels, full in ((self.bids, new_bids, update.bids, book.bids),
                                       (self.asks, new_asks, update.asks, book.asks)):
            keys = {float(p) for p, _ in levels} if lost else set(old) | set(new)
            # a level pushed out of the window gets no delete (the client truncates); a removed one does
            side = [new[k] if k in new else (old[k][0], "0") for k in keys
                    if (k in new or (k in old and k not in full)) and old.get(k) != new.get(k)]
            changes.append(side)
        self.unnoticed = lost and told_top(self.bids, changes[0], True) == sorted(new_bids.items(), reverse=True)[
            :CHECKSUM_LEVELS] and told_top(self.asks, changes[1], False) == sorted(new_asks.items())[:CHECKSUM_LEVELS]
        self.bids, self.asks = new_bids, new_asks
        return changes[0], changes[1]


def told_top(old: dict, changes: list, descending: bool) -> list:
    """The top 10 of one side as a client holds it: `old` with `changes` applied."""
    side = dict(old)
    for p, q in changes:
        if float(q) == 0.0:
            side.pop(float(p), None)
        else:
            side[float(p)] = (p, q)
    return sorted(side.items(), reverse=descending)[:CHECKSUM_LEVELS]


class KrakenConnection(Connection):
    protocol = PROTOCOL
    heartbeat_interval = HEARTBEAT_SECONDS

    def __init__(self, hub, ws, request):
        super().__init__(hub, ws, request)
        self.lx = loopback(request)
        self.views: dict[str, BookView] = {}
        self.checksums: dict[str, tuple[int, int]] = {}  # symbol -> (checksum, ms) of the book update being enqueued

    def price_places(self, symbol: str) -> int:
        return decimals(self.lx.source.price_tick(symbol))

    async def serve(self) -> web.WebSocketResponse:
        self.send_json({"channel": "status", "type": "update",
                        "data": [{"version": "2.0.0", "system": "online", "api_version": "v2",
                                  "connection_id": id(self) & 0xFFFFFFFFFFFF}]})
        return await super().serve()

    def heartbeat(self) -> None:
        if self.subscriptions:
            self.send_json({"channel": "heartbeat"})

    def ack(self, method: str, req_id, ok: bool, res: dict | None = None, error: str | None = None) -> None:
        now = iso(int(time.time() * 1000))
        reply = {"method": method, "success": ok, "time_in": now, "time_out": now}
        if ok:
            reply["result"] = res
        else:
            reply.update(error=error, symbol=(res or {}).get("symbol"))
        if req_id is not None:
            reply["req_id"] = req_id
        self.send_json(reply)

    async def on_text(self, text: str) -> None:
        try:
            request = json.loads(text)
            method, req_id = request["method"], request.get("req_id")
        except (ValueError, KeyError, TypeError):
            self.send_json({"error": "Malformed request", "success": False})
            return
        if method == "ping":
            self.ack("pong", req_id, True, {"warnings": []})
            return
        if method not in ("subscribe", "unsubscribe"):
            self.ack(method, req_id, False, error=f"Method not found: {method!r}")
            return
        params = request.get("params") if isinstance(request.get("params"), dict) else {}
        channel, symbols = params.get("channel"), params.get("symbol")
        if channel not in CHANNELS:
            self.ack(method, req_id, False, {"channel": channel}, "Subscription name invalid")
            return
        if not isinstance(symbols, list):
            self.ack(method, req_id, False, {"channel": channel}, "Pair field must be an array")
            return
        depth = params.get("depth", 10)
        if channel == "book" and depth not in DEPTHS:
            self.ack(method, req_id, False, {"channel": channel}, "Subscription depth not supported")
            return
        for symbol in symbols:
            self.subscribe_one(method, req_id, channel, symbol, depth)

    def subscribe_one(self, method: str, req_id, channel: str, symbol, depth: int) -> None:
        res = {"channel": channel, "symbol": symbol}
        if symbol not in self.lx.source.symbols:
            self.ack(method, req_id, False, res, f"Currency pair not supported {symbol}")
            return
        if channel == "book":
            res.update(depth=depth, snapshot=True)
        self.ack(method, req_id, True, res)
        if method == "unsubscribe":
            self.unsubscribe(symbol, CHANNELS[channel])
            self.views.pop(symbol, None)
            return
        self.subscribe(symbol, CHANNELS[channel])
        self.hub.sent.subscribes += 1
        if channel == "book":  # the snapshot follows the ack, before any queued update
            self.send_book_snapshot(symbol, depth)

    def send_book_snapshot(self, symbol: str, depth: int) -> None:
        book = self.hub.books[symbol]
        view = self.views[symbol] = BookView(depth, book)
        bids, asks = list(view.bids.values()), list(view.asks.values())
        crc = checksum(bids, asks, self.price_places(symbol))
        frame = {"channel": "book", "type": "snapshot",
                 "data": [{"symbol": symbol, "bids": wire_levels(bids), "asks": wire_levels(asks), "checksum": crc}]}
        self.enqueue(json.dumps(frame, separators=(",", ":")), symbol, "orderbook", crc, snapshot=True,
                     values=(None, None))  # a Kraken snapshot carries no time

    def enqueue(self, frame: str, symbol=None, channel=None, ident=None, snapshot=False, values=None) -> None:
        """A book update is logged by its checksum (Kraken has no update id) and its timestamp."""
        if channel == "orderbook" and not snapshot and symbol in self.checksums:
            ident, ts_ms = self.checksums.pop(symbol)
            values = (None, ts_ms)
        super().enqueue(frame, symbol, channel, ident, snapshot, values)

    def encode(self, event: Event) -> str | None:
        if isinstance(event, BookUpdate):
            return self.encode_book(event)
        if isinstance(event, Trade):
            data = {"symbol": event.symbol, "side": event.side, "price": float(event.price),
                    "qty": float(event.amount), "ord_type": "market", "trade_id": event.trade_id,
                    "timestamp": iso(event.ts_ms)}
            message = {"channel": "trade", "type": "update", "data": [data]}
        elif isinstance(event, Ticker):
            vwap = event.quote_volume / event.base_volume if event.base_volume else event.last
            change = event.last - event.open
            data = {"symbol": event.symbol, "bid": float(event.bid), "bid_qty": float(event.bid_qty),
                    "ask": float(event.ask), "ask_qty": float(event.ask_qty), "last": event.last,
                    "volume": round(event.base_volume, 8), "vwap": round(vwap, 8), "low": event.low,
                    "high": event.high, "change": round(change, 8),
                    "change_pct": round(change / event.open * 100, 2) if event.open else 0.0}
            message = {"channel": "ticker", "type": "update", "data": [data]}
        else:
            return None
        return json.dumps(message, separators=(",", ":"))

    def encode_book(self, event: BookUpdate) -> str | None:
        view = self.views.get(event.symbol)
        if view is None:
            return None
        book = self.hub.books[event.symbol]
        bids, asks = view.advance(book, event)
        if view.unnoticed:  # the withheld diff changed nothing this client's checksum covers
            self.hub.sent.fault("gap_unnoticed", protocol=PROTOCOL, symbol=event.symbol, first_id=event.first_id)
        if not bids and not asks:
            return None  # nothing changed inside this client's window: Kraken sends nothing
        _, top_bids, top_asks = book.snapshot(CHECKSUM_LEVELS)
        crc = checksum(top_bids, top_asks, self.price_places(event.symbol))
        self.checksums[event.symbol] = (crc, event.ts_ms)
        data = {"symbol": event.symbol, "bids": wire_levels(bids), "asks": wire_levels(asks),
                "checksum": crc, "timestamp": iso(event.ts_ms)}
        return json.dumps({"channel": "book", "type": "update", "data": [data]}, separators=(",", ":"))
