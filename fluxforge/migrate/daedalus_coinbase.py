"""Daedalus's native Coinbase Advanced Trade collector: its raw WebSocket messages -> old-shaped rows.

Why: Daedalus ran its own Coinbase client (`ingestion/collectors/coinbase_ws.py`) and stored
each WebSocket message as it came: an NDJSON line `{"capture_ts", "data": <message>,
"metadata": {"source": "coinbase", "channel"}}`, or, with its Parquet writer, a generic row
(`type` "", `exchange`/`symbol` "unknown", `data_json` = the message).  These are not ccxt
records, so they are normalised here the way ccxt.pro `coinbase` (4.5) normalises the same
messages (`handle_order_book`, `handle_trade` + `parse_trade`, `handle_tickers` +
`parse_ws_ticker`), into the rows `daedalus_map` takes, under ccxt.pro's exchange id
`coinbase`, the one `fluxforge config import-daedalus` gives the translated entry:

* `l2_data` event `snapshot` -> a book `snapshot` row, levels best first as ccxt's book holds
  them; `update` -> a `delta` row, each level's new absolute size in message order (0 deletes);
  `timestamp` = the message's `timestamp` in ms, `nonce` = its `sequence_num` (Coinbase numbers
  every message of a connection; ccxt never reads it, bronze keeps it so a gap can be found);
* `market_trades` -> one trade row per trade, oldest first (Coinbase sends newest first, ccxt
  appends them reversed), `side` lower case (`unknown_order_side`: null), `timestamp` its `time`;
* `ticker` / `ticker_batch` -> ticker rows at the message's `timestamp`: `last` = `price`,
  24 h `high`/`low`/`volume_24_h`/`price_percent_chg_24_h`, best bid/ask and their quantities;
* `candles` -> ohlcv rows, timeframe `5m` (the channel's only one), `timestamp` = `start` (s -> ms).

Product ids `BTC-USD` become `BTC/USD`.  `subscriptions`, `heartbeats`, `status` and `user`
carry no market data: counted, not imported.  A value of the wrong type rejects the message.

Daedalus never checked `sequence_num`.  Along each file (`SequenceWatch`) a step other than
+1 is a lost message (on the wire or in Daedalus's full queue): a `gap` event row (every
symbol, every channel: which one lost it cannot be known), after which the books are wrong
until the next snapshot, as they were for Daedalus; a step back to 0 is a new connection: a
`reconnect` event row (its snapshots follow).  The ETL resets features at both.
"""
from __future__ import annotations

from collections import Counter

from .daedalus_values import BadLine, UnmappedChannel, capture_us, string

EXCHANGE = "coinbase"  # ccxt.pro's id for Coinbase Advanced Trade (daedalus_schema.EXCHANGE_RENAMES)
CANDLES_TIMEFRAME = "5m"
_SIDES = {"bid": "bids", "offer": "asks"}  # ccxt.pro coinbase options['sides']
_KNOWN = {
    "ticker": {"type", "product_id", "price", "volume_24_h", "low_24_h", "high_24_h", "price_percent_chg_24_h",
               "best_bid", "best_bid_quantity", "best_ask", "best_ask_quantity"},
    "trades": {"trade_id", "product_id", "price", "size", "side", "time"},
    "ohlcv": {"start", "open", "high", "low", "close", "volume", "product_id"},
}


def is_native(rec: dict) -> bool:
    """A native collector message: no ccxt `type`, a Coinbase message with its `channel` as data."""
    data = rec.get("data")
    return not rec.get("type") and isinstance(data, dict) and "channel" in data


def _decimal(value: object, what: str) -> float | None:
    """Coinbase's decimal strings ("21921.74"); "" = none."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadLine(f"{what} is {type(value).__name__}, not a decimal")
    try:
        return float(value)
    except ValueError:
        raise BadLine(f"{what} is {str(value)[:30]!r}, not a decimal") from None


def _ms(value: object, what: str) -> int | None:
    """ISO 8601 (Coinbase's ns precision) -> ms since the epoch, truncated like ccxt's parse8601."""
    if value is None or value == "":
        return None
    us = capture_us(string(value, what))
    if us is None:
        raise BadLine(f"{what} {str(value)[:40]!r} is not an ISO 8601 time")
    return us // 1000


def _symbol(product_id: object) -> str:
    pid = string(product_id, "product_id")
    if not pid or "-" not in pid:
        raise BadLine(f"product_id {pid!r} is not BASE-QUOTE")
    return pid.replace("-", "/", 1)


def _extra(channel: str, item: dict, extra: Counter) -> None:
    for key, value in item.items():
        if key not in _KNOWN[channel] and value not in (None, "", [], {}):
            extra[key] += 1


def _events(message: dict) -> list[dict]:
    events = message.get("events") or []
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise BadLine("events is not a list of objects")
    return events


def _items(event: dict, key: str) -> list[dict]:
    items = event.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise BadLine(f"{key} is not a list of objects")
    return items


def _book(base: dict, message: dict, extra: Counter) -> list[dict]:
    when = _ms(message.get("timestamp"), "timestamp")
    seq = message.get("sequence_num")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        raise BadLine(f"sequence_num is {type(seq).__name__}, not an integer")
    rows = []
    for event in _events(message):
        kind = event.get("type")
        if kind not in ("snapshot", "update"):
            raise BadLine(f"l2_data event type {kind!r}")
        sides: dict[str, list[dict]] = {"bids": [], "asks": []}
        timed = False
        for level in _items(event, "updates"):
            side = _SIDES.get(level.get("side"))
            if side is None:
                raise BadLine(f"l2_data side {level.get('side')!r}")
            px, sz = _decimal(level.get("price_level"), "price_level"), _decimal(level.get("new_quantity"), "new_quantity")
            if px is None or sz is None:
                raise BadLine("l2_data level without price_level or new_quantity")
            sides[side].append({"price": px, "size": sz})
            timed |= level.get("event_time") not in (None, "", "1970-01-01T00:00:00Z")
        if timed:
            extra["event_time"] += 1
        if kind == "snapshot":  # the book ccxt holds after it: levels present, best first
            sides = {"bids": sorted((lv for lv in sides["bids"] if lv["size"] > 0), key=lambda lv: -lv["price"]),
                     "asks": sorted((lv for lv in sides["asks"] if lv["size"] > 0), key=lambda lv: lv["price"])}
        rows.append(dict(base, symbol=_symbol(event.get("product_id")), timestamp=when, nonce=seq,
                         kind="snapshot" if kind == "snapshot" else "delta", info_json=None, **sides))
    return rows


def _trades(base: dict, message: dict, extra: Counter) -> list[dict]:
    rows = []
    for event in _events(message):
        for t in reversed(_items(event, "trades")):
            side = string(t.get("side"), "trade side")
            side = None if not side or side.lower() == "unknown_order_side" else side.lower()
            tid = t.get("trade_id")
            rows.append(dict(base, symbol=_symbol(t.get("product_id")), trade_id=None if tid is None else str(tid),
                             timestamp=_ms(t.get("time"), "trade time"), side=side,
                             price=_decimal(t.get("price"), "trade price"), amount=_decimal(t.get("size"), "trade size"),
                             cost=None, info_json=None))
            _extra("trades", t, extra)
    return rows


def _tickers(base: dict, message: dict, extra: Counter) -> list[dict]:
    when = _ms(message.get("timestamp"), "timestamp")
    rows = []
    for event in _events(message):
        for t in _items(event, "tickers"):
            if not t.get("product_id"):  # Coinbase's empty ticker_batch entries; ccxt skips them too
                extra["ticker without product_id (skipped, as ccxt does)"] += 1
                continue
            last = _decimal(t.get("price"), "price")
            rows.append(dict(base, symbol=_symbol(t.get("product_id")), timestamp=when,
                             bid=_decimal(t.get("best_bid"), "best_bid"),
                             bid_volume=_decimal(t.get("best_bid_quantity"), "best_bid_quantity"),
                             ask=_decimal(t.get("best_ask"), "best_ask"),
                             ask_volume=_decimal(t.get("best_ask_quantity"), "best_ask_quantity"),
                             last=last, close=last, open=None, vwap=None, change=None, quote_volume=None,
                             high=_decimal(t.get("high_24_h"), "high_24_h"), low=_decimal(t.get("low_24_h"), "low_24_h"),
                             base_volume=_decimal(t.get("volume_24_h"), "volume_24_h"),
                             percentage=_decimal(t.get("price_percent_chg_24_h"), "price_percent_chg_24_h"),
                             info_json=None))
            _extra("ticker", t, extra)
    return rows


def _candles(base: dict, message: dict, extra: Counter) -> list[dict]:
    rows = []
    for event in _events(message):
        for c in _items(event, "candles"):
            start = _decimal(c.get("start"), "candle start")
            if start is None:
                raise BadLine("a candle without its start")
            rows.append(dict(base, symbol=_symbol(c.get("product_id")), timestamp=int(start) * 1000,
                             timeframe=CANDLES_TIMEFRAME,
                             **{k: _decimal(c.get(k), f"candle {k}") for k in ("open", "high", "low", "close", "volume")}))
            _extra("ohlcv", c, extra)
    return rows


# Coinbase channel -> (the old-shaped channel its rows are, how to read it)
_CHANNELS = {"l2_data": ("orderbook", _book), "market_trades": ("trades", _trades),
             "ticker": ("ticker", _tickers), "ticker_batch": ("ticker", _tickers), "candles": ("ohlcv", _candles)}


class SequenceWatch:
    """`sequence_num` along one file: the `gap` / `reconnect` event rows its steps imply."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.events: list[dict] = []  # bronze `events` rows, taken by the reader

    def see(self, seq: object, recv_us: int) -> None:
        if isinstance(seq, bool) or not isinstance(seq, int):
            return
        if self.last is not None and seq != self.last + 1:
            lost = seq != 0
            self.events.append({
                "exchange": EXCHANGE, "symbol": None, "channel": None, "timestamp": recv_us // 1000,
                "recv_ns": recv_us * 1000, "event": "gap" if lost else "reconnect", "count": None,
                "reason": (f"sequence_num {seq} after {self.last}: a message was lost (Daedalus did not check)"
                           if lost else f"new connection (sequence_num 0 after {self.last})")})
        self.last = seq


def parse_native(rec: dict, extra: Counter, sequence: SequenceWatch | None = None) -> tuple[str, list[dict]]:
    """(channel, old-shaped rows) of one native collector record (`is_native`); BadLine or
    UnmappedChannel otherwise.  `extra` counts message keys with no place in bronze;
    `sequence` (one per file) collects the gap / reconnect events of `sequence_num`."""
    message = rec["data"]
    captured = capture_us(rec.get("capture_ts"))
    if captured is not None and sequence is not None:
        sequence.see(message.get("sequence_num"), captured)
    name = message.get("channel")
    if name not in _CHANNELS:
        if isinstance(name, str):
            raise UnmappedChannel(f"coinbase {name}", 1)
        raise BadLine(f"coinbase channel {name!r}")
    if message.get("type") == "error":
        raise UnmappedChannel("coinbase error", 1)
    if captured is None:
        raise BadLine("no receive time (capture_ts missing or unreadable)")
    channel, read = _CHANNELS[name]
    base = {"collected_at": None, "capture_ts": captured, "exchange": EXCHANGE}
    return channel, read(base, message, extra)
