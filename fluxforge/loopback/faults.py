"""Fault injection for the loopback exchange, at start (schedule) or at runtime (Python/HTTP).

Why: the collector's promises are about bad days: sequence gaps, dropped
connections, silent sockets, garbage frames, crossed books and a slow
exchange.  Each fault here reproduces one on the real wire protocol:

- `gap`: the next book diff of a symbol that a synced client would notice
  (somebody subscribed, and their snapshot already served) is withheld; the book
  still advances, so the client sees U != previous u + 1 (OKX: prevSeqId break).
- `crossed`: the next diff adds a bid above the best ask; the diff after removes it.
- `malformed`: a truncated JSON frame goes to every (matching) connection.
- `disconnect`: every open WebSocket is closed (`abrupt`: TCP reset, no close frame).
- `stall`: open connections stay open but get nothing (no data, no acks) for
  `seconds` (default: until `resume`); new connections are served normally.
- `refuse`: the exchange stops serving one symbol's channel (`channel`, default
  `orderbook`; Coinbase): a subscribe naming it fails whole, with Coinbase's error
  frame, as for a product delisted or halted after the client loaded markets.
- `slow`: every WebSocket frame and REST answer is delayed by `delay` seconds,
  for `seconds` (default: until `resume`).

A schedule spec reads `KIND@AT[/EVERY][:key=value,...]`, e.g. `gap@5`,
`stall@10:seconds=3`, `disconnect@2/30:abrupt=1`, `crossed@4:symbol=BTC/USDT`.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .events import BookUpdate
from .hub import Hub
from .sentlog import SentLog

KINDS = ("gap", "crossed", "malformed", "disconnect", "stall", "refuse", "slow", "resume")
ANY = "*"


@dataclass
class FaultSpec:
    kind: str
    at: float = 0.0
    every: float | None = None
    params: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "FaultSpec":
        head, _, args = text.partition(":")
        kind, _, when = head.partition("@")
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r} (one of {', '.join(KINDS)})")
        at, _, every = when.partition("/")
        params = {}
        for item in filter(None, args.split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"fault parameter {item!r} must be key=value")
            params[key.strip()] = _coerce(value.strip())
        try:
            return cls(kind, float(at or 0), float(every) if every else None, params)
        except ValueError:
            raise ValueError(f"fault time in {text!r} must be seconds, e.g. gap@5 or gap@5/10") from None


def _coerce(value: str):
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value


class Faults:
    """The switches. Book faults are armed and fire on the next matching diff."""

    def __init__(self, hub: Hub, sent: SentLog):
        self.hub, self.sent = hub, sent
        self.pending_gaps: dict[str, int] = {}
        self.pending_crossed: dict[str, int] = {}
        self.uncross: dict[str, str] = {}  # symbol -> price of the crossing bid to remove
        hub.book_filter = self.filter_book

    # -- runtime API -----------------------------------------------------------------------
    def gap(self, symbol: str | None = None, count: int = 1) -> None:
        key = symbol or ANY
        self.pending_gaps[key] = self.pending_gaps.get(key, 0) + count
        self.sent.fault("gap_armed", symbol=symbol, count=count)

    def crossed(self, symbol: str | None = None) -> None:
        key = symbol or ANY
        self.pending_crossed[key] = self.pending_crossed.get(key, 0) + 1
        self.sent.fault("crossed_armed", symbol=symbol)

    def malformed(self, symbol: str | None = None, protocol: str | None = None) -> int:
        n = self.hub.send_malformed(symbol, protocol)
        self.sent.fault("malformed", symbol=symbol, protocol=protocol, connections=n)
        return n

    async def disconnect(self, protocol: str | None = None, abrupt: bool = False) -> int:
        n = await self.hub.disconnect(protocol, bool(abrupt))
        self.sent.fault("disconnect", protocol=protocol, abrupt=bool(abrupt), connections=n)
        return n

    def stall(self, seconds: float | None = None, protocol: str | None = None) -> int:
        n = self.hub.stall(seconds, protocol)
        self.sent.fault("stall", seconds=seconds, protocol=protocol, connections=n)
        return n

    def refuse(self, symbol: str, channel: str = "orderbook") -> None:
        self.hub.refused.add((symbol, channel))
        self.sent.fault("refuse", symbol=symbol, channel=channel)

    def slow(self, delay: float = 0.2, seconds: float | None = None) -> None:
        self.hub.set_slow(float(delay), seconds)
        self.sent.fault("slow", delay=delay, seconds=seconds)

    def resume(self) -> None:
        self.hub.resume()
        self.sent.fault("resume")

    async def trigger(self, kind: str, **params) -> None:
        """Fire a fault by name (schedule and HTTP control use this)."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}")
        result = getattr(self, kind)(**params)
        if asyncio.iscoroutine(result):
            await result

    async def run_schedule(self, specs: list[FaultSpec]) -> None:
        async def one(spec: FaultSpec) -> None:
            await asyncio.sleep(spec.at)
            while True:
                await self.trigger(spec.kind, **spec.params)
                if not spec.every:
                    return
                await asyncio.sleep(spec.every)

        await asyncio.gather(*(one(s) for s in specs))

    # -- applied by the hub to each book diff ----------------------------------------------
    def _take(self, pending: dict[str, int], symbol: str) -> bool:
        for key in (symbol, ANY):
            if pending.get(key):
                pending[key] -= 1
                return True
        return False

    def filter_book(self, update: BookUpdate) -> BookUpdate | None:
        symbol = update.symbol
        if not self.hub.subscribers.get((symbol, update.channel)) or symbol in self.hub.awaiting_snapshot:
            return update  # nobody would notice: keep faults armed for a watched diff
        if symbol in self.uncross:
            price = self.uncross.pop(symbol)
            update.bids = [lv for lv in update.bids if lv[0] != price] + [(price, "0")]
        if self._take(self.pending_gaps, symbol):
            self.sent.fault("gap", symbol=symbol, first_id=update.first_id, last_id=update.last_id)
            return None
        if self._take(self.pending_crossed, symbol):
            best_ask = self.hub.books[symbol].best_ask()
            if best_ask is not None:
                decimals = len(best_ask[0].partition(".")[2])
                price = f"{float(best_ask[0]) * 1.001:.{decimals}f}"
                update.bids = [lv for lv in update.bids if lv[0] != price] + [(price, "1.00000")]
                self.uncross[symbol] = price
                self.sent.fault("crossed", symbol=symbol, bid=price, ask=best_ask[0], last_id=update.last_id)
        return update
