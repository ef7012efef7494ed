"""Coinbase Advanced Trade public WebSocket, as much of it as unmodified ccxt.pro `coinbase` uses.

Why a fourth book model: Coinbase numbers *messages*, not book updates.  Every
message on a connection carries `sequence_num`, counting from 0 across all its
channels; the `level2` book (`l2_data` messages) is a full snapshot after the
subscribe, then updates, with no book sequence at all.  A lost message shows
only as a jump in `sequence_num`, which ccxt.pro `coinbase` (4.5.x) never
reads, so a lost book update corrupts its book silently.  Here a message is
lost the Coinbase way: a gap fault withholds a book diff (noticed as a jump in
the neutral update ids) and that message's number is skipped; a stalled
connection's frames are lost after their numbers were given.

REST (ccxt's `load_markets`): `GET /api/v3/brokerage/market/products` (spot; with
`product_type=FUTURE`: none), `/v2/currencies`, `/v2/currencies/crypto`, `/v2/exchange-rates`.
WebSocket `/advanced-trade-ws`: `{"type":"subscribe"|"unsubscribe","product_ids":[...],
"channel":"level2"|"market_trades"|"ticker"|"ticker_batch"|"heartbeats"}`, answered by a
`subscriptions` message listing what is subscribed; `heartbeats` every second when subscribed.
Coinbase's aliases: its USDC products report trades and tickers under the USD product
(`LoopbackExchange(report_as={"BTC/USDC": "BTC/USD"})`; the USD product is then listed too).
A `refuse` fault makes a subscribe that names the refused product fail whole.
Not modelled: the `market_trades` snapshot Coinbase sends on subscribe (updates only).
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from aiohttp import web

from .events import BookUpdate, Event, Ticker, Trade, okx_inst_id, split_symbol
from .hub import Connection, loopback

PROTOCOL = "coinbase"
CHANNELS = {"level2": "orderbook", "market_trades": "trades", "ticker": "ticker", "ticker_batch": "ticker"}
HEARTBEAT_SECONDS = 1.0
WS_PATH = "/advanced-trade-ws"


def ccxt_config(base_url: str, ws_url: str) -> dict:
    """The `ccxt:` dict for ccxt.pro coinbase: our REST root and WebSocket URL."""
    return {"urls": {"api": {"rest": base_url, "ws": ws_url + WS_PATH}}}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v3/brokerage/market/products", products)
    app.router.add_get("/v2/currencies", empty_list)
    app.router.add_get("/v2/currencies/crypto", empty_list)
    app.router.add_get("/v2/exchange-rates", exchange_rates)
    app.router.add_get(WS_PATH, websocket)


def rfc3339(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def empty_list(request: web.Request) -> web.Response:
    await loopback(request).rest_delay()
    return web.json_response({"data": []})


async def exchange_rates(request: web.Request) -> web.Response:
    await loopback(request).rest_delay()
    return web.json_response({"data": {"currency": "USD", "rates": {}}})


def product(symbol: str, tick: str) -> dict:
    base, quote = split_symbol(symbol)
    return {"product_id": okx_inst_id(symbol), "price": "0", "base_increment": "0.00000001",
            "quote_increment": tick, "price_increment": tick, "quote_min_size": "1", "quote_max_size": "150000000",
            "base_min_size": "0.00000001", "base_max_size": "3400", "base_name": base, "quote_name": quote,
            "status": "online", "cancel_only": False, "limit_only": False, "post_only": False,
            "trading_disabled": False, "auction_mode": False, "product_type": "SPOT", "quote_currency_id": quote,
            "base_currency_id": base, "base_display_symbol": base, "quote_display_symbol": quote,
            "view_only": False, "alias": "", "alias_to": [], "product_venue": "CBE"}


async def products(request: web.Request) -> web.Response:
    lx = loopback(request)
    await lx.rest_delay()
    if request.query.get("product_type", "SPOT") != "SPOT":
        return web.json_response({"products": [], "num_products": 0})
    items = [product(s, lx.source.price_tick(s)) for s in lx.source.symbols]
    items += [product(alias, lx.source.price_tick(s)) for s, alias in lx.report_as.items()]
    return web.json_response({"products": items, "num_products": len(items)})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(autoping=True)
    await ws.prepare(request)
    return await CoinbaseConnection(loopback(request).hub, ws, request).serve()


def l2_updates(side: str, levels, ts: str) -> list[dict]:
    return [{"side": side, "event_time": ts, "price_level": p, "new_quantity": q} for p, q in levels]


class CoinbaseConnection(Connection):
    protocol = PROTOCOL
    heartbeat_interval = HEARTBEAT_SECONDS

    def __init__(self, hub, ws, request):
        super().__init__(hub, ws, request)
        self.lx = loopback(request)
        self.sequence = 0                        # the next message's sequence_num
        self.channels: dict[str, set[str]] = {}  # Coinbase channel -> product ids
        self.next_id: dict[str, int] = {}        # symbol -> next neutral book update id expected
        self.heartbeats = 0
        self.book_keys: dict[str, tuple[int, int]] = {}  # symbol -> (sequence_num, ms) of the book frame being queued

    def message(self, channel: str, events: list, ts_ms: int | None = None, symbol: str | None = None) -> str:
        """A frame with the next sequence_num; a book frame's (sequence_num, timestamp ms) is kept for the
        sent-log under `symbol` (Coinbase's only order key for a book message: see `enqueue`)."""
        ts_ms = ts_ms or int(time.time() * 1000)
        frame = {"channel": channel, "client_id": "", "timestamp": rfc3339(ts_ms),
                 "sequence_num": self.sequence, "events": events}
        if symbol is not None:
            self.book_keys[symbol] = (self.sequence, ts_ms)
        self.sequence += 1
        return json.dumps(frame, separators=(",", ":"))

    def enqueue(self, frame: str, symbol=None, channel=None, ident=None, snapshot=False, values=None) -> None:
        """A book frame is sent-logged with the (sequence_num, timestamp ms) it carries."""
        if channel == "orderbook" and symbol in self.book_keys:
            values = self.book_keys.pop(symbol)
        super().enqueue(frame, symbol, channel, ident, snapshot, values)

    def heartbeat(self) -> None:
        if self.channels.get("heartbeats") is not None:
            self.heartbeats += 1
            now = datetime.now(timezone.utc)
            self.enqueue(self.message("heartbeats", [{"current_time": str(now), "heartbeat_counter": self.heartbeats}]))

    async def on_text(self, text: str) -> None:
        try:
            request = json.loads(text)
            kind, channel, product_ids = request["type"], request["channel"], request.get("product_ids", [])
        except (ValueError, KeyError, TypeError):
            self.send_json({"type": "error", "message": "Failure to parse request: expected type and channel"})
            return
        if kind not in ("subscribe", "unsubscribe") or (channel not in CHANNELS and channel != "heartbeats"):
            self.send_json({"type": "error", "message": f"Failure to subscribe: unknown channel {channel!r}"})
            return
        symbols = [self.lx.symbol_by_okx_id.get(p) for p in product_ids if isinstance(p, str)]
        if None in symbols or len(symbols) != len(product_ids):
            self.send_json({"type": "error", "message": f"Failure to subscribe: unknown product in {product_ids!r}"})
            return
        refused = [s for s in symbols if (s, CHANNELS.get(channel)) in self.hub.refused]
        if kind == "subscribe" and refused:
            products = [okx_inst_id(s) for s in refused]
            self.send_json({"type": "error", "message": f"Failure to subscribe: {channel} unavailable for {products!r}"})
            return
        subscribed = self.channels.setdefault(channel, set())
        for symbol in symbols:
            if kind == "subscribe":
                subscribed.add(okx_inst_id(symbol))
                if channel in CHANNELS:
                    self.subscribe(symbol, CHANNELS[channel])
                    self.hub.sent.subscribes += 1
            else:
                subscribed.discard(okx_inst_id(symbol))
                if channel in CHANNELS and not any(okx_inst_id(symbol) in self.channels.get(c, ())
                                                   for c, ch in CHANNELS.items() if ch == CHANNELS[channel]):
                    self.unsubscribe(symbol, CHANNELS[channel])
        if kind == "unsubscribe" and not subscribed:
            del self.channels[channel]
        listing = {c: sorted(p) for c, p in self.channels.items()}
        self.enqueue(self.message("subscriptions", [{"subscriptions": listing}]))
        if kind == "subscribe" and channel == "level2":  # snapshots follow the listing
            for symbol in symbols:
                self.send_book_snapshot(symbol)

    def send_book_snapshot(self, symbol: str) -> None:
        book = self.hub.books[symbol]
        last_id, bids, asks = book.snapshot()
        self.next_id[symbol] = last_id + 1
        ts = rfc3339(book.ts_ms or int(time.time() * 1000))
        event = {"type": "snapshot", "product_id": okx_inst_id(symbol),
                 "updates": l2_updates("bid", bids, ts) + l2_updates("offer", asks, ts)}
        self.enqueue(self.message("l2_data", [event], symbol=symbol), symbol, "orderbook", last_id, snapshot=True)

    def wants(self, channel: str, symbol: str) -> bool:
        return okx_inst_id(symbol) in self.channels.get(channel, ())

    def encode(self, event: Event) -> str | None:
        pid = okx_inst_id(event.symbol)
        reported = okx_inst_id(self.lx.report_as.get(event.symbol, event.symbol))  # trades and tickers
        if isinstance(event, BookUpdate):
            expected = self.next_id.get(event.symbol)
            if expected is None:
                return None  # no snapshot on this connection yet
            if event.first_id > expected:
                self.sequence += 1  # the withheld diff's message: its number is gone with it
            self.next_id[event.symbol] = event.last_id + 1
            ts = rfc3339(event.ts_ms)
            body = {"type": "update", "product_id": pid,
                    "updates": l2_updates("bid", event.bids, ts) + l2_updates("offer", event.asks, ts)}
            return self.message("l2_data", [body], event.ts_ms, symbol=event.symbol)
        if isinstance(event, Trade):
            trade = {"trade_id": str(event.trade_id), "product_id": reported, "price": event.price, "size": event.amount,
                     "side": event.side.upper(), "time": rfc3339(event.ts_ms)}
            return self.message("market_trades", [{"type": "update", "trades": [trade]}], event.ts_ms)
        if isinstance(event, Ticker):
            change = (event.last - event.open) / event.open * 100 if event.open else 0.0
            tick = {"type": "ticker", "product_id": reported, "price": repr(event.last),
                    "volume_24_h": f"{event.base_volume:.8f}", "low_24_h": repr(event.low),
                    "high_24_h": repr(event.high), "low_52_w": repr(event.low), "high_52_w": repr(event.high),
                    "price_percent_chg_24_h": f"{change:.8f}", "best_bid": event.bid,
                    "best_bid_quantity": event.bid_qty, "best_ask": event.ask, "best_ask_quantity": event.ask_qty}
            channel = "ticker_batch" if self.wants("ticker_batch", event.symbol) else "ticker"
            return self.message(channel, [{"type": "update", "tickers": [tick]}], event.ts_ms)
        return None
