"""Daedalus NDJSON lines -> rows shaped exactly like Daedalus's own raw Parquet rows.

Why this shape: Daedalus's Parquet writer turned these same records into its Parquet
rows; doing the same here lets one mapping (`daedalus_map`) serve both formats.
Unlike that writer, nothing is defaulted: a missing `timestamp` stays null, and a
value of the wrong type (a price that is a string, bids that are not [price, size]
pairs) rejects the line with a reason instead of being written as 0.

A line is `{"type", "exchange", "symbol", "method", "data", "collected_at",
"capture_ts"}`; `data` is the ccxt unified ticker, trade list (or one trade), order
book, candle list (`ohlcv`) or `{symbol: bid/ask ticker}` map (`bidask`).  The old
Parquet writer's generic rows (`type`, `data_json`: how it stored ohlcv and bidask) are
the same records and go through `parse_line` too, as dicts.  Keys of `data` that the
old Parquet writer did not keep and bronze has no column for (a trade's
`takerOrMaker`, `fee`, ...; a level's third element) are counted.
"""
from __future__ import annotations

import json
from collections import Counter

from .daedalus_coinbase import SequenceWatch, is_native, parse_native
from .daedalus_schema import CHANNELS, KNOWN_DATA_KEYS, TICKER_KEYS
from .daedalus_values import BadLine, UnmappedChannel, capture_us
from .daedalus_values import integer as _integer
from .daedalus_values import number as _number
from .daedalus_values import string as _string

_TICKER_FLOATS = ("bid", "ask", "bidVolume", "askVolume", "last", "open", "high", "low", "close", "vwap",
                  "baseVolume", "quoteVolume", "change", "percentage")


def _levels(side: object, what: str, extra: Counter) -> list[dict]:
    if side is None:
        return []
    if not isinstance(side, list):
        raise BadLine(f"data.{what} is {type(side).__name__}, not a list")
    out = []
    for level in side:
        if not isinstance(level, (list, tuple)) or len(level) < 2:
            raise BadLine(f"data.{what} level is not a [price, size] pair")
        if len(level) > 2:
            extra[f"{what}[2:] (level count / id)"] += 1
        out.append({"price": _number(level[0], f"data.{what} price"), "size": _number(level[1], f"data.{what} size")})
    return out


def _info(data: dict) -> str | None:
    return json.dumps(data["info"], separators=(",", ":")) if "info" in data else None


def _extra_keys(channel: str, data: dict, extra: Counter) -> None:
    for key, value in data.items():
        if key not in KNOWN_DATA_KEYS[channel] and value not in (None, "", [], {}):
            extra[key] += 1


def _ticker(base: dict, data: dict, extra: Counter) -> list[dict]:
    row = dict(base, timestamp=_integer(data.get("timestamp"), "data.timestamp"), info_json=_info(data))
    for key in _TICKER_FLOATS:
        row[TICKER_KEYS.get(key, key)] = _number(data.get(key), f"data.{key}")
    _extra_keys("ticker", data, extra)
    return [row]


def _trades(base: dict, data: object, extra: Counter) -> list[dict]:
    trades = [data] if isinstance(data, dict) else data
    if not isinstance(trades, list):
        raise BadLine(f"data is {type(data).__name__}, not a trade list")
    rows = []
    for t in trades:
        if not isinstance(t, dict):
            raise BadLine("a trade is not an object")
        tid = t.get("id")
        if tid is not None and not isinstance(tid, (str, int)):
            raise BadLine(f"trade id is {type(tid).__name__}")
        rows.append(dict(base, trade_id=None if tid is None else str(tid),
                         timestamp=_integer(t.get("timestamp"), "trade timestamp"),
                         side=_string(t.get("side"), "trade side"),
                         price=_number(t.get("price"), "trade price"), amount=_number(t.get("amount"), "trade amount"),
                         cost=_number(t.get("cost"), "trade cost"), info_json=_info(t)))
        _extra_keys("trades", t, extra)
    return rows


def _book(base: dict, data: dict, extra: Counter) -> list[dict]:
    row = dict(base, timestamp=_integer(data.get("timestamp"), "data.timestamp"),
               nonce=_integer(data.get("nonce"), "data.nonce"),
               bids=_levels(data.get("bids"), "bids", extra), asks=_levels(data.get("asks"), "asks", extra),
               info_json=_info(data))
    _extra_keys("orderbook", data, extra)
    return [row]


_CANDLE = ("open", "high", "low", "close", "volume")


def _ohlcv(base: dict, data: object, extra: Counter) -> list[dict]:
    """ccxt's candle list `[[open time ms, open, high, low, close, volume], ...]`: one row per candle."""
    if not isinstance(data, list):
        raise BadLine(f"data is {type(data).__name__}, not a candle list")
    rows = []
    for candle in data:
        if not isinstance(candle, (list, tuple)) or len(candle) < 6:
            raise BadLine("a candle is not [time, open, high, low, close, volume]")
        if len(candle) > 6:
            extra["candle[6:]"] += 1
        opened = _integer(candle[0], "candle time")
        if opened is None:
            raise BadLine("a candle without its open time")
        rows.append(dict(base, timestamp=opened,
                         **{name: _number(v, f"candle {name}") for name, v in zip(_CANDLE, candle[1:6])}))
    return rows


def _bidask(base: dict, data: object, extra: Counter) -> list[dict]:
    """ccxt's `{symbol: ticker}` map of best bid/ask (one ticker alone is taken too): one row per symbol."""
    if not isinstance(data, dict):
        raise BadLine(f"data is {type(data).__name__}, not a bid/ask map")
    if not data:
        return []
    pairs = data.items() if all(isinstance(v, dict) for v in data.values()) else [(base["symbol"], data)]
    rows = []
    for key, t in pairs:
        symbol = _string(t.get("symbol"), "bid/ask symbol") or key
        if not symbol:
            raise BadLine("a bid/ask without symbol")
        rows.append(dict(base, symbol=symbol, timestamp=_integer(t.get("timestamp"), "bid/ask timestamp"),
                         bid=_number(t.get("bid"), "bid"), bid_volume=_number(t.get("bidVolume"), "bidVolume"),
                         ask=_number(t.get("ask"), "ask"), ask_volume=_number(t.get("askVolume"), "askVolume"),
                         info_json=_info(t)))
        _extra_keys("bidask", t, extra)
    return rows


_BUILDERS = {"ticker": _ticker, "trades": _trades, "orderbook": _book, "ohlcv": _ohlcv, "bidask": _bidask}


def parse_line(line: str | bytes | dict, extra: Counter,
               sequence: SequenceWatch | None = None) -> tuple[str, list[dict]]:
    """(channel, old-shaped rows) of one NDJSON line (or an already decoded record), a ccxt record
    or a native Coinbase collector message (daedalus_coinbase); BadLine or UnmappedChannel otherwise.

    `extra` counts, per `<channel>.<key>`, the data keys with no place in bronze; `sequence`
    (one per file) follows the native messages' `sequence_num`."""
    if isinstance(line, dict):
        rec = line
    else:
        try:
            rec = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadLine(f"not JSON ({str(e).splitlines()[0][:60]})") from None
    if not isinstance(rec, dict):
        raise BadLine(f"a JSON {type(rec).__name__}, not an object")
    local: Counter = Counter()
    if is_native(rec):
        channel, rows = parse_native(rec, local, sequence)
    else:
        channel, rows = _ccxt_record(rec, local)
    for key, n in local.items():
        extra[f"{channel}.{key}"] += n
    return channel, rows


def _ccxt_record(rec: dict, local: Counter) -> tuple[str, list[dict]]:
    channel = rec.get("type")
    if channel is None:
        raise BadLine("no 'type' (not a Daedalus ccxt record, nor a native Coinbase collector message: "
                      "its data has no 'channel')")
    if channel not in CHANNELS:
        if isinstance(channel, str) and isinstance(rec.get("data"), (dict, list)):
            raise UnmappedChannel(channel, 1)
        raise BadLine(f"unknown type {channel!r}")
    exchange = _string(rec.get("exchange"), "exchange")
    symbol = _string(rec.get("symbol"), "symbol")
    if not exchange or not (symbol or channel == "bidask"):  # bidask: every market watched, symbols in data
        raise BadLine("no exchange or symbol")
    captured = capture_us(rec.get("capture_ts"))
    collected = _integer(rec.get("collected_at"), "collected_at")
    if captured is None and collected is None:
        raise BadLine("no receive time (capture_ts and collected_at missing or unreadable)")
    data = rec.get("data")
    if channel in ("ticker", "orderbook") and not isinstance(data, dict):
        raise BadLine(f"data is {type(data).__name__}, not an object")
    base = {"collected_at": collected, "capture_ts": captured, "exchange": exchange, "symbol": symbol}
    return channel, _BUILDERS[channel](base, data, local)
