"""Binance spot wire protocol, as much of it as unmodified ccxt.pro `binance` and cryptofeed use for market data.

REST: `GET /api/v3/exchangeInfo`, `/api/v3/depth`, `/api/v3/ping`, `/api/v3/time`.
WebSocket, in Binance's three URL forms: `/ws` and `/ws/<anything>` (ccxt connects to
`/ws/<stream index>` and SUBSCRIBEs), raw streams in the path (`/ws/btcusdt@trade/ethusdt@trade`),
and combined streams (`/stream?streams=btcusdt@depth@100ms/btcusdt@aggTrade`, cryptofeed's form),
whose every payload is wrapped `{"stream": <name>, "data": <payload>}`.  Requests
`{"method":"SUBSCRIBE"|"UNSUBSCRIBE"|"LIST_SUBSCRIPTIONS","params":[...],"id":N}`
are answered `{"result":null,"id":N}` in order with the data, so ccxt sees the
ack before the first diff and only then fetches the REST snapshot.  Streams:
`<sym>@depth` / `<sym>@depth@100ms` (depthUpdate U/u), `<sym>@trade`, `<sym>@aggTrade` (one
aggregate per trade), `<sym>@ticker` (24hrTicker), `<sym>@miniTicker` (24hrMiniTicker, ccxt's
default for watchTickers), `<sym>@bookTicker` (best bid/ask, no event type or time: ccxt's
watchBidsAsks) and `<sym>@kline_<interval>` (kline, re-sent while the candle is open: ccxt's
watchOHLCV, which fetches no REST klines first).  A connection carries each (symbol, channel)
in one form: the last subscribed, except that a full `@ticker` is never replaced by
`@miniTicker`; klines in every interval subscribed.  A repeated SUBSCRIBE (ccxt resubscribes
after a gap) is acked again.
Aliases (`LoopbackExchange(report_as={"BTC/USDC": "BTC/USD"})`): that symbol's trades, tickers,
candles and best bid/ask name the other market (`"s"`), which exchangeInfo lists too; books keep
their own (as Coinbase does with its USDC products).
Partial book depth streams `<sym>@depth<5|10|20>` / `...@100ms`: the top-N book as Binance
documents it, `{"lastUpdateId", "bids", "asks"}` (no event type, no symbol: a raw stream is
named by its URL), cut from the authoritative book after each update (Binance pushes one per
100 ms; the loopback one per change, each a valid top-N snapshot), sent-logged as snapshots.
"""
from __future__ import annotations

import json
import time
from functools import partial

from aiohttp import web

from .events import BookTicker, BookUpdate, Event, Kline, Ticker, Trade, binance_id, split_symbol
from .hub import Connection, loopback
from .quotes import TIMEFRAME_MS

PROTOCOL = "binance"
STREAM_CHANNELS = {"depth": "orderbook", "depth@100ms": "orderbook", "depth@1000ms": "orderbook",
                   "trade": "trades", "aggTrade": "trades", "ticker": "ticker", "miniTicker": "ticker",
                   "bookTicker": "bidsasks", **{f"kline_{tf}": "ohlcv" for tf in TIMEFRAME_MS}}


MINI_TICKER_FIELDS = ("E", "s", "c", "o", "h", "l", "v", "q")
PARTIAL_DEPTHS = (5, 10, 20)  # levels of Binance's partial book depth streams
PARTIAL_STREAMS = {f"depth{n}{rate}": n for n in PARTIAL_DEPTHS for rate in ("", "@100ms", "@1000ms")}


def error(status: int, code: int, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


def ccxt_config(base_url: str, ws_url: str) -> dict:
    """The `ccxt:` dict for ccxt.pro binance: our URLs, and spot-only market loading (one REST call)."""
    return {
        "urls": {"api": {"public": f"{base_url}/api/v3", "ws": {"spot": f"{ws_url}/ws"}}},
        "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False,
                    "defaultType": "spot"},
    }


def symbol_info(symbol: str, tick: str) -> dict:
    base, quote = split_symbol(symbol)
    return {
        "symbol": base + quote, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
        "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False, "permissions": ["SPOT"], "permissionSets": [["SPOT"]],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000", "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "maxNotional": "9000000.00000000"},
        ],
    }


def add_routes(app: web.Application, prefix: str = "", protocol: str = PROTOCOL) -> None:
    """The routes under `prefix`; `protocol` names them in the sent-log (binanceus.py: `/us`, `binanceus`)."""
    app.router.add_get(f"{prefix}/api/v3/exchangeInfo", exchange_info)
    app.router.add_get(f"{prefix}/api/v3/depth", partial(depth, protocol=protocol))
    app.router.add_get(f"{prefix}/api/v3/ping", ping)
    app.router.add_get(f"{prefix}/api/v3/time", server_time)
    app.router.add_get(f"{prefix}/ws", partial(websocket, protocol=protocol))
    app.router.add_get(prefix + "/ws/{tail:.*}", partial(websocket, protocol=protocol))
    app.router.add_get(f"{prefix}/stream", partial(websocket, protocol=protocol, combined=True))


async def ping(request: web.Request) -> web.Response:
    return web.json_response({})


async def server_time(request: web.Request) -> web.Response:
    return web.json_response({"serverTime": int(time.time() * 1000)})


async def exchange_info(request: web.Request) -> web.Response:
    lx = loopback(request)
    await lx.rest_delay()
    return web.json_response({
        "timezone": "UTC", "serverTime": int(time.time() * 1000),
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
        "exchangeFilters": [],
        "symbols": [symbol_info(s, lx.source.price_tick(s)) for s in lx.source.symbols]
        + [symbol_info(alias, lx.source.price_tick(s)) for s, alias in lx.report_as.items()],
    })


async def depth(request: web.Request, protocol: str = PROTOCOL) -> web.Response:
    lx = loopback(request)
    await lx.rest_delay()
    market_id = request.query.get("symbol", "").upper()
    symbol = lx.symbol_by_binance_id.get(market_id)
    if symbol is None:
        return error(400, -1121, "Invalid symbol.")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return error(400, -1100, "Illegal characters found in parameter 'limit'.")
    last_id, bids, asks = lx.source.books[symbol].snapshot(max(1, min(limit, 5000)))
    lx.sent.snapshot(protocol, symbol, last_id)
    lx.hub.awaiting_snapshot.discard(symbol)
    return web.json_response({"lastUpdateId": last_id, "bids": [list(b) for b in bids],
                              "asks": [list(a) for a in asks]})


async def websocket(request: web.Request, protocol: str = PROTOCOL, combined: bool = False) -> web.StreamResponse:
    lx = loopback(request)
    if combined:  # /stream?streams=a/b/c (an empty or absent list: SUBSCRIBE later, still wrapped)
        names = [n for n in request.query.get("streams", "").split("/") if n]
    else:  # raw-stream URL form /ws/btcusdt@trade/ethusdt@trade; /ws/<index> (ccxt) names none
        tail = request.match_info.get("tail", "")
        names = tail.split("/") if "@" in tail else []
    bad = next((n for n in names if parse_stream(lx, n) is None), None)
    if bad is not None:  # refused before the upgrade, so nothing was subscribed
        return error(400, -1121, f"Invalid stream name {bad!r}.")
    ws = web.WebSocketResponse(autoping=True)
    await ws.prepare(request)
    conn = BinanceConnection(lx.hub, ws, request)
    conn.protocol = protocol
    conn.combined = combined
    if names:
        conn.subscribe_streams(names)
    return await conn.serve()


def parse_stream(lx, name: str) -> tuple[str, str] | None:
    """`btcusdt@depth@100ms` -> ("BTC/USDT", "orderbook"); None for an unknown symbol or stream."""
    market_id, _, kind = name.partition("@")
    symbol = lx.symbol_by_binance_id.get(market_id.upper())
    channel = "orderbook" if kind in PARTIAL_STREAMS else STREAM_CHANNELS.get(kind)
    return (symbol, channel) if symbol and channel else None


class BinanceConnection(Connection):
    protocol = PROTOCOL
    combined = False  # /stream: payloads wrapped {"stream", "data"}

    def __init__(self, hub, ws, request):
        super().__init__(hub, ws, request)
        self.lx = loopback(request)
        self.streams: set[str] = set()
        self.stream_names: dict[tuple[str, str], str] = {}  # (symbol, channel) -> the stream carrying it
        self.partial: dict[str, int] = {}     # symbol -> depth of its partial book stream

    def parse_stream(self, name: str) -> tuple[str, str] | None:
        return parse_stream(self.lx, name)

    def deliver(self, event: Event) -> None:
        depth = self.partial.get(event.symbol)
        if depth is None or not isinstance(event, BookUpdate):
            return super().deliver(event)
        last_id, bids, asks = self.hub.books[event.symbol].snapshot(depth)
        frame = json.dumps({"lastUpdateId": last_id, "bids": [list(b) for b in bids],
                            "asks": [list(a) for a in asks]}, separators=(",", ":"))
        self.enqueue(frame, event.symbol, "orderbook", last_id, snapshot=True)

    def subscribe_streams(self, names: list) -> str | None:
        """Subscribe every stream in `names`; the first invalid name is returned (nothing subscribed)."""
        parsed = []
        for name in names:
            target = self.parse_stream(name) if isinstance(name, str) else None
            if target is None:
                return str(name)
            parsed.append((name, target))
        for name, target in parsed:
            self.streams.add(name)
            self.subscribe(*target)
            depth = PARTIAL_STREAMS.get(name.partition("@")[2])
            if depth is not None:  # no REST snapshot follows: gap faults need not wait for one
                self.partial[target[0]] = depth
            elif target[1] == "orderbook":
                self.hub.awaiting_snapshot.add(target[0])
            current = self.stream_names.get(target, "")
            if not (current.endswith("@ticker") and name.endswith("@miniTicker")):
                self.stream_names[target] = name
        self.hub.sent.subscribes += 1
        return None

    async def on_text(self, text: str) -> None:
        try:
            request = json.loads(text)
            method, params, rid = request["method"], request.get("params", []), request.get("id")
        except (ValueError, KeyError, TypeError):
            self.send_json({"error": {"code": 3, "msg": "Invalid JSON: expected an object with method"}})
            return
        if method == "SUBSCRIBE":
            bad = self.subscribe_streams(params if isinstance(params, list) else [params])
            if bad is not None:
                self.send_json({"error": {"code": 2, "msg": f"Invalid request: unknown stream {bad!r}"}, "id": rid})
                return
            self.send_json({"result": None, "id": rid})
        elif method == "UNSUBSCRIBE":
            for name in params if isinstance(params, list) else []:
                target = self.parse_stream(name) if isinstance(name, str) else None
                self.streams.discard(name)
                if target and name.partition("@")[2] in PARTIAL_STREAMS:
                    self.partial.pop(target[0], None)
                if target and not any(self.parse_stream(other) == target for other in self.streams):
                    self.unsubscribe(*target)  # (klines: the last interval of the symbol)
                    self.stream_names.pop(target, None)
            self.send_json({"result": None, "id": rid})
        elif method == "LIST_SUBSCRIPTIONS":
            self.send_json({"result": sorted(self.streams), "id": rid})
        else:
            self.send_json({"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid})

    def encode(self, event: Event) -> str | None:
        reported = None if isinstance(event, BookUpdate) else self.lx.report_as.get(event.symbol)
        if isinstance(event, Kline):
            name = f"{binance_id(event.symbol).lower()}@kline_{event.timeframe}"
            if name not in self.streams:
                return None  # another interval of a symbol whose klines this connection follows
            message = to_message(event, reported)
        else:
            name = self.stream_names.get((event.symbol, event.channel))
            if name is None:
                return None
            kind = name.partition("@")[2]
            if kind == "aggTrade":
                message = agg_trade_message(event, reported)
            else:
                message = to_message(event, reported)
                if kind == "miniTicker":
                    message = {"e": "24hrMiniTicker", **{k: message[k] for k in MINI_TICKER_FIELDS}}
        if self.combined:
            message = {"stream": name, "data": message}
        return json.dumps(message, separators=(",", ":"))


def agg_trade_message(trade: Trade, reported: str | None = None) -> dict:
    """An `aggTrade` payload: the loopback's trades are never aggregated, so first == last id."""
    return {"e": "aggTrade", "E": trade.ts_ms, "s": binance_id(reported or trade.symbol), "a": trade.trade_id,
            "p": trade.price, "q": trade.amount, "f": trade.trade_id, "l": trade.trade_id, "T": trade.ts_ms,
            "m": trade.side == "sell", "M": True}


def to_message(event: Event, reported: str | None = None) -> dict:
    """The Binance stream payload of a neutral event (`reported`: the symbol named in it, if not its own)."""
    sid = binance_id(reported or event.symbol)
    if isinstance(event, BookUpdate):
        return {"e": "depthUpdate", "E": event.ts_ms, "s": sid, "U": event.first_id, "u": event.last_id,
                "b": [list(b) for b in event.bids], "a": [list(a) for a in event.asks]}
    if isinstance(event, Trade):
        return {"e": "trade", "E": event.ts_ms, "s": sid, "t": event.trade_id, "p": event.price,
                "q": event.amount, "T": event.ts_ms, "m": event.side == "sell", "M": True}
    if isinstance(event, Ticker):
        change = event.last - event.open
        avg = event.quote_volume / event.base_volume if event.base_volume else event.last
        return {"e": "24hrTicker", "E": event.ts_ms, "s": sid, "p": f"{change:.8f}",
                "P": f"{(change / event.open * 100 if event.open else 0):.3f}", "w": f"{avg:.8f}",
                "x": f"{event.open:.8f}", "c": f"{event.last:.8f}", "Q": f"{event.last_qty:.8f}",
                "b": event.bid, "B": event.bid_qty, "a": event.ask, "A": event.ask_qty,
                "o": f"{event.open:.8f}", "h": f"{event.high:.8f}", "l": f"{event.low:.8f}",
                "v": f"{event.base_volume:.8f}", "q": f"{event.quote_volume:.8f}",
                "O": event.open_ts_ms, "C": event.ts_ms, "F": event.first_trade_id,
                "L": event.last_trade_id, "n": event.trade_count}
    if isinstance(event, BookTicker):  # spot bookTicker: no event type, no event time
        return {"u": event.update_id, "s": sid, "b": event.bid, "B": event.bid_qty, "a": event.ask,
                "A": event.ask_qty}
    if isinstance(event, Kline):
        return {"e": "kline", "E": event.ts_ms, "s": sid, "k": {
            "t": event.open_ms, "T": event.close_ms, "s": sid, "i": event.timeframe, "f": event.first_trade_id,
            "L": event.last_trade_id, "o": event.open, "c": event.close, "h": event.high, "l": event.low,
            "v": event.volume, "n": event.trades, "x": event.closed, "q": event.quote_volume, "V": "0",
            "Q": "0", "B": "0"}}
    raise TypeError(f"no Binance message for {type(event).__name__}")
