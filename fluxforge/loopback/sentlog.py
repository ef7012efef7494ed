"""What the loopback exchange actually SENT, per protocol, symbol and channel.

Why: collector tests compare "what the exchange sent" with "what the collector
stored" (every book nonce in order, every trade id, nothing duplicated, at most
one flush interval lost per crash).  Entries are recorded after the WebSocket
frame was handed to the transport, so dropped diffs (gap faults), stalled
connections and malformed frames never count as sent data; drops are listed
separately.
"""
from __future__ import annotations

import time
from array import array

MAX_IDS_PER_STREAM = 500_000  # 16 bytes each: bounds memory of a long run; `truncated` says when reached


class StreamLog:
    """One (protocol, symbol, channel): counts and the ids sent, with send times."""

    def __init__(self) -> None:
        self.messages = 0
        self.first_id: int | None = None
        self.last_id: int | None = None
        self._ids = array("q")  # book: last update id (u / seqId); trades: trade id
        self._sent_ns = array("q")  # time.time_ns() when each id was sent
        self.dropped: list[tuple[int, int]] = []  # book id ranges withheld by gap faults
        self.snapshots: list[int] = []  # book: update id of each full snapshot served
        # bidsasks / ohlcv: each message's values (events.sent_values), in order; books of protocols whose
        # book messages carry no update id (Coinbase, Kraken): (order key, exchange ms) of every book
        # message as the wire carried it, snapshots included (Coinbase: sequence_num and the message's
        # timestamp; Kraken: None and the update's timestamp, a snapshot has none)
        self.values: list[tuple] = []
        self.truncated = False

    def add_values(self, values: tuple | None) -> None:
        if values is not None and len(self.values) < MAX_IDS_PER_STREAM:
            self.values.append(values)

    @property
    def ids(self) -> list[int]:
        """Ids in send order (a copy)."""
        return self._ids.tolist()

    @property
    def sent_ns(self) -> list[int]:
        """Send times (ns since the epoch) of `ids`, same order (a copy)."""
        return self._sent_ns.tolist()

    def add(self, ident: int | None, now_ns: int, values: tuple | None = None) -> None:
        self.messages += 1
        self.add_values(values)
        if ident is None:
            return
        if self.first_id is None:
            self.first_id = ident
        self.last_id = ident
        if len(self._ids) < MAX_IDS_PER_STREAM:
            self._ids.append(ident)
            self._sent_ns.append(now_ns)
        else:
            self.truncated = True

    def summary(self, detail: bool = False) -> dict:
        out = {"messages": self.messages, "first_id": self.first_id, "last_id": self.last_id,
               "dropped": [list(r) for r in self.dropped], "snapshots": list(self.snapshots),
               "truncated": self.truncated}
        if detail:
            out["ids"] = self.ids
            out["sent_ns"] = self.sent_ns
            if self.values:
                out["values"] = [list(v) for v in self.values]
        return out


class SentLog:
    """All StreamLogs of one loopback exchange, plus fault and connection counters."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str, str], StreamLog] = {}
        self.faults: list[dict] = []
        self.malformed_sent = 0
        self.connections_opened = 0
        self.connections_open = 0
        self.subscribes = 0
        self.snapshots = 0

    def stream(self, protocol: str, symbol: str, channel: str) -> StreamLog:
        key = (protocol, symbol, channel)
        log = self.streams.get(key)
        if log is None:
            log = self.streams[key] = StreamLog()
        return log

    def sent(self, protocol: str, symbol: str, channel: str, ident: int | None, values: tuple | None = None) -> None:
        self.stream(protocol, symbol, channel).add(ident, time.time_ns(), values)

    def snapshot(self, protocol: str, symbol: str, last_id: int, values: tuple | None = None) -> None:
        """A full book (REST depth or WebSocket snapshot) with this update id was served."""
        self.snapshots += 1
        stream = self.stream(protocol, symbol, "orderbook")
        stream.snapshots.append(last_id)
        stream.add_values(values)

    def dropped(self, protocol: str, symbol: str, first_id: int, last_id: int) -> None:
        self.stream(protocol, symbol, "orderbook").dropped.append((first_id, last_id))

    def fault(self, kind: str, **details) -> None:
        self.faults.append({"kind": kind, "time_ns": time.time_ns(), **details})

    def summary(self, detail: bool = False) -> dict:
        protocols: dict = {}
        for (protocol, symbol, channel), log in sorted(self.streams.items()):
            protocols.setdefault(protocol, {}).setdefault(symbol, {})[channel] = log.summary(detail)
        return {
            "protocols": protocols,
            "faults": list(self.faults),
            "malformed_sent": self.malformed_sent,
            "connections": {"opened": self.connections_opened, "open": self.connections_open},
            "subscribes": self.subscribes,
            "snapshots": self.snapshots,
        }
