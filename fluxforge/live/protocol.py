"""A subscription request: what a subscriber asks for, validated, and how rows match it.

Why a module of its own: the Unix socket and the WebSocket take the same first
message, and the client builds it; a mistake in it (a typo'd key, `since` and
`last_minutes` together) must be refused with one clear line before any row is
sent, never silently widen or narrow the subscription.

Request (one JSON object; every key optional):
`{"products": ["hf", "bars"], "exchanges": ["binance"], "symbols": ["BTC/USDT"],
  "since": 1733130000000 | "2026-12-02T09:00:00Z", "last_minutes": 5,
  "resume": {"hf": {"binance": {"BTC/USDT": 1733130004000}}},
  "format": "json" | "arrow", "token": "..."}`
A product matches itself and everything below it (`bars` matches
`bars/interval=60s`); a symbol may be given as `BTC/USDT` or as its partition
name `BTC-USDT`.  `resume` (what a reconnecting client sends: live/resume.py) gives
streams -- an exact product, exchange and symbol -- replay points of their own (ms),
the time of the last row it received of each; the other streams replay from `since`
or `last_minutes` (neither: they are live only).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..etl.naming import symbol_path_value

FORMATS = ("json", "arrow")
_KEYS = {"products", "exchanges", "symbols", "since", "last_minutes", "resume", "format", "token"}
MS_MIN, MS_MAX = -(1 << 63), (1 << 63) - 1  # times are int64 milliseconds, as the rows' timestamps
MAX_LAST_MINUTES = 1e9  # ~1,900 years: more than any ring holds, and `* 60` stays finite
MAX_REQUEST_BYTES = 1 << 20  # a reconnect's `resume` names every stream it had: ~30 bytes each


class RequestError(ValueError):
    """The request cannot be served; the message says why (sent to the subscriber)."""


class BusyError(RequestError):
    """Refused for now: the endpoint has all the subscribers or waiting connections it takes
    (etl.live.max_subscribers).  Its `error` frame says `"retry": true`: a later attempt may be
    served, and a reconnecting client tries again."""


def symbol_key(symbol: str) -> str:
    """One spelling per symbol: the partition value (ccxt symbols always hold a '/')."""
    return symbol_path_value(symbol) if "/" in symbol else symbol


@dataclass(frozen=True)
class Request:
    products: tuple[str, ...] | None = None
    exchanges: frozenset[str] | None = None
    symbols: frozenset[str] | None = None      # symbol_key() spellings
    since_ms: int | None = None
    last_minutes: float | None = None
    format: str = "json"
    token: str | None = None
    resume: dict[tuple[str, str, str], int] | None = field(default=None, hash=False)  # (product, exchange,
    # symbol_key(symbol)) -> ms

    def matches(self, product: str, exchange: str, symbol: str) -> bool:
        if self.products is not None and not any(product == p or product.startswith(p + "/") for p in self.products):
            return False
        if self.exchanges is not None and exchange not in self.exchanges:
            return False
        return self.symbols is None or symbol_key(symbol) in self.symbols

    def replay_from_ms(self, now: float | None = None) -> int | None:
        """Exchange time (ms) replay starts at; None: no replay, live only."""
        if self.since_ms is not None:
            return self.since_ms
        if self.last_minutes is not None:
            return int(((time.time() if now is None else now) - self.last_minutes * 60.0) * 1000)
        return None

    def replay_from(self, key: tuple[str, str, str], default: int | None) -> int | None:
        """Where the stream `key` (product, exchange, symbol) replays from: its `resume` point, else
        `default` (`replay_from_ms()`)."""
        if self.resume is None:
            return default
        product, exchange, symbol = key
        return self.resume.get((product, exchange, symbol_key(symbol)), default)

    def describe(self) -> dict:
        """The subscription as echoed in the `subscribed` frame (never the token)."""
        return {"products": list(self.products) if self.products else None,
                "exchanges": sorted(self.exchanges) if self.exchanges else None,
                "symbols": sorted(self.symbols) if self.symbols else None,
                "since": self.since_ms, "last_minutes": self.last_minutes, "format": self.format,
                **({"resume_streams": len(self.resume)} if self.resume else {})}


def _names(data: dict, key: str) -> tuple[str, ...] | None:
    v = data.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise RequestError(f"{key}: expected a non-empty list of names")
    return tuple(v)


def parse_since(v: object) -> int:
    """Milliseconds since the epoch, or an ISO-8601 time (UTC unless it says otherwise)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise RequestError("since: expected milliseconds since the epoch or an ISO-8601 time")
    if isinstance(v, str):
        try:
            t = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise RequestError(f"since: {v!r} is not an ISO-8601 time") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        return int(t.timestamp() * 1000)
    return _ms(v, "since")


def _ms(v: int | float, what: str) -> int:
    """A time given in milliseconds as an int64 (rows' timestamps are), or RequestError naming `what`."""
    if isinstance(v, float) and not math.isfinite(v):
        raise RequestError(f"{what}: {v!r} is not a time")
    ms = int(v)
    if not MS_MIN <= ms <= MS_MAX:
        raise RequestError(f"{what}: {v!r} is out of range (int64 milliseconds since the epoch)")
    return ms


def _resume(v: object) -> dict[tuple[str, str, str], int]:
    """`resume`'s {product: {exchange: {symbol: ms}}} as {(product, exchange, symbol_key): ms}."""
    what = "resume: expected {product: {exchange: {symbol: milliseconds}}}"
    if not isinstance(v, dict):
        raise RequestError(what)
    out = {}
    for product, exchanges in v.items():
        if not product or not isinstance(exchanges, dict):
            raise RequestError(what)
        for exchange, symbols in exchanges.items():
            if not exchange or not isinstance(symbols, dict):
                raise RequestError(what)
            for symbol, ms in symbols.items():
                if not symbol or isinstance(ms, bool) or not isinstance(ms, int):
                    raise RequestError(f"{what}; {product} {exchange} {symbol!r}: {ms!r}")
                out[(product, exchange, symbol_key(symbol))] = _ms(ms, f"resume {product} {exchange} {symbol}")
    return out


def parse_request(data: object) -> Request:
    """A Request from the decoded first message; RequestError says what is wrong."""
    if isinstance(data, (bytes, str)):
        if len(data) > MAX_REQUEST_BYTES:
            raise RequestError("request too long")
        try:
            data = json.loads(data or "{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(f"request is not JSON: {e}") from None
        except RecursionError:  # arrays in arrays, thousands deep: not a request either
            raise RequestError("request is not a subscription: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise RequestError("request must be a JSON object")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise RequestError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}")
    fmt = data.get("format", "json")
    if fmt not in FORMATS:
        raise RequestError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if data.get("since") is not None and data.get("last_minutes") is not None:
        raise RequestError("give since or last_minutes, not both")
    last = data.get("last_minutes")
    if last is not None and (isinstance(last, bool) or not isinstance(last, (int, float))
                             or not 0 < last <= MAX_LAST_MINUTES):  # NaN and infinity too
        raise RequestError(f"last_minutes: expected a positive number of minutes, at most {MAX_LAST_MINUTES:g}")
    token = data.get("token")
    if token is not None and not isinstance(token, str):
        raise RequestError("token: expected a string")
    exchanges = _names(data, "exchanges")
    symbols = _names(data, "symbols")
    return Request(products=_names(data, "products"),
                   exchanges=frozenset(exchanges) if exchanges else None,
                   symbols=frozenset(symbol_key(s) for s in symbols) if symbols else None,
                   since_ms=parse_since(data["since"]) if data.get("since") is not None else None,
                   last_minutes=float(last) if last is not None else None, format=fmt, token=token,
                   resume=_resume(data["resume"]) if data.get("resume") is not None else None)


def request_json(**fields) -> str:
    """The request line a client sends (None values left out)."""
    return json.dumps({k: v for k, v in fields.items() if v is not None}, separators=(",", ":"))
