"""Column buffers that turn ccxt structures into bronze rows (DESIGN decision 3).

Why columnar from the first byte: the collector's CPU budget is a fraction of
what ccxt itself spends per message, so rows are appended straight into
per-column Python lists (book levels into one flat list plus offsets) and
become an Arrow RecordBatch in a few C calls at flush time -- no per-row dicts,
no per-row Arrow calls.
"""
from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa

from ..bronze.schemas import BOOK_DELTA, BOOK_SNAPSHOT, CHANNEL_SCHEMAS, EVENTS, ORDERBOOK, TICKER

_chain = chain.from_iterable


class ChannelBuffer:
    """Rows of one channel, column by column, since the last flush."""

    __slots__ = ("channel", "schema", "cols", "rows")

    def __init__(self, channel: str):
        self.channel = channel
        self.schema = CHANNEL_SCHEMAS[channel]
        self.cols: dict[str, list] = {name: [] for name in self.schema.names}
        self.rows = 0

    def prepend(self, older: "ChannelBuffer") -> None:
        """Put `older`'s rows (same plain-column channel) before ours, e.g. events carried over a full disk."""
        for name, values in older.cols.items():
            self.cols[name][:0] = values
        self.rows += older.rows

    def to_batch(self) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays(
            [pa.array(self.cols[f.name], type=f.type) for f in self.schema], schema=self.schema)


class BookBuffer(ChannelBuffer):
    """Order book rows (format 2): snapshots and deltas as struct-of-arrays lists.

    Levels are appended interleaved (`px0, sz0, px1, sz1, ...`): a delta's
    levels arrive already flat from the tap (one list per side, handed over
    without a copy), a snapshot's `[px, sz]` pairs are flattened with one
    C-level `extend` per side.  They are split into price and size columns
    with NumPy strides at flush time, on the writer thread.  Levels that carry
    extra fields (`[px, sz, count]`) take the slower per-field path.
    """

    __slots__ = ("bids", "asks", "bid_off", "ask_off")

    def __init__(self) -> None:
        super().__init__("orderbook")
        self.bids: list[float] = []   # px, sz interleaved
        self.asks: list[float] = []
        self.bid_off = [0]            # offsets in levels
        self.ask_off = [0]

    @staticmethod
    def _extend(flat: list, levels: list) -> None:
        if levels and len(levels[0]) == 2 and len(levels[-1]) == 2:
            flat.extend(_chain(levels))
        else:
            for lv in levels:
                flat.append(lv[0])
                flat.append(lv[1])

    def _head(self, exchange: str, symbol: str, kind: str, timestamp: int | None, recv_ns: int,
              nonce: int | None, prev_nonce: int | None, checksum: int | None) -> None:
        c = self.cols
        c["exchange"].append(exchange)
        c["symbol"].append(symbol)
        c["timestamp"].append(timestamp)
        c["recv_ns"].append(recv_ns)
        c["kind"].append(kind)
        c["nonce"].append(nonce)
        c["prev_nonce"].append(prev_nonce)
        c["checksum"].append(checksum)
        self.rows += 1

    def add_snapshot(self, exchange: str, symbol: str, timestamp: int | None, recv_ns: int, nonce: int | None,
                     prev_nonce: int | None, checksum: int | None, bids: list, asks: list) -> None:
        """A book (re)initialised to `bids`/`asks` (`[px, sz, ...]` levels, best first)."""
        self._head(exchange, symbol, BOOK_SNAPSHOT, timestamp, recv_ns, nonce, prev_nonce, checksum)
        self._extend(self.bids, bids)
        self._extend(self.asks, asks)
        self.bid_off.append(self.bid_off[-1] + len(bids))
        self.ask_off.append(self.ask_off[-1] + len(asks))

    def add_delta(self, exchange: str, symbol: str, timestamp: int | None, recv_ns: int, nonce: int | None,
                  prev_nonce: int | None, checksum: int | None, bid_flat: list, ask_flat: list) -> None:
        """Changed levels in message order, flat `px, sz, px, sz, ...` (sz 0 = delete)."""
        self._head(exchange, symbol, BOOK_DELTA, timestamp, recv_ns, nonce, prev_nonce, checksum)
        self.bids.extend(bid_flat)
        self.asks.extend(ask_flat)
        self.bid_off.append(self.bid_off[-1] + (len(bid_flat) >> 1))
        self.ask_off.append(self.ask_off[-1] + (len(ask_flat) >> 1))

    def add(self, exchange: str, symbol: str, book: Any, depth: int, recv_ns: int) -> None:
        """The top `depth` levels of `book` as a snapshot row (sources we only see as whole books)."""
        self.add_snapshot(exchange, symbol, book.get("timestamp"), recv_ns, book.get("nonce"), None, None,
                          book["bids"][:depth], book["asks"][:depth])

    def to_batch(self) -> pa.RecordBatch:
        c = self.cols
        bid_off = pa.array(self.bid_off, pa.int32())
        ask_off = pa.array(self.ask_off, pa.int32())
        bids = np.asarray(self.bids, dtype=np.float64)
        asks = np.asarray(self.asks, dtype=np.float64)
        arrays = [
            pa.array(c["exchange"], pa.string()),
            pa.array(c["symbol"], pa.string()),
            pa.array(c["timestamp"], pa.int64()),
            pa.array(c["recv_ns"], pa.int64()),
            pa.array(c["kind"], pa.string()),
            pa.array(c["nonce"], pa.int64()),
            pa.array(c["prev_nonce"], pa.int64()),
            pa.array(c["checksum"], pa.int64()),
            pa.ListArray.from_arrays(bid_off, pa.array(np.ascontiguousarray(bids[0::2]))),
            pa.ListArray.from_arrays(bid_off, pa.array(np.ascontiguousarray(bids[1::2]))),
            pa.ListArray.from_arrays(ask_off, pa.array(np.ascontiguousarray(asks[0::2]))),
            pa.ListArray.from_arrays(ask_off, pa.array(np.ascontiguousarray(asks[1::2]))),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=ORDERBOOK)


class TradeBuffer(ChannelBuffer):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("trades")

    def add(self, exchange: str, symbol: str, trade: dict, recv_ns: int) -> None:
        c = self.cols
        c["exchange"].append(exchange)
        c["symbol"].append(symbol)
        c["timestamp"].append(trade.get("timestamp"))
        c["recv_ns"].append(recv_ns)
        tid = trade.get("id")
        c["trade_id"].append(None if tid is None else str(tid))
        c["price"].append(trade.get("price"))
        c["amount"].append(trade.get("amount"))
        c["side"].append(trade.get("side"))
        self.rows += 1


# bronze ticker column -> ccxt unified ticker key
_TICKER_KEYS = [(name, key) for name, key in [
    ("bid", "bid"), ("bid_size", "bidVolume"), ("ask", "ask"), ("ask_size", "askVolume"),
    ("last", "last"), ("open", "open"), ("high", "high"), ("low", "low"),
    ("base_volume", "baseVolume"), ("quote_volume", "quoteVolume"), ("vwap", "vwap"),
    ("percentage", "percentage"),
]]
assert [n for n, _ in _TICKER_KEYS] == TICKER.names[4:]


class TickerBuffer(ChannelBuffer):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("ticker")

    def add(self, exchange: str, symbol: str, ticker: dict, recv_ns: int) -> None:
        c = self.cols
        c["exchange"].append(exchange)
        c["symbol"].append(symbol)
        c["timestamp"].append(ticker.get("timestamp"))
        c["recv_ns"].append(recv_ns)
        for name, key in _TICKER_KEYS:
            v = ticker.get(key)
            c[name].append(None if v is None else float(v))
        self.rows += 1


class EventBuffer(ChannelBuffer):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("events")

    def add(self, exchange: str, symbol: str | None, channel: str | None, event: str,
            reason: str | None, count: int | None, recv_ns: int) -> None:
        c = self.cols
        c["exchange"].append(exchange)
        c["symbol"].append(symbol)
        c["channel"].append(channel)
        c["timestamp"].append(recv_ns // 1_000_000)
        c["recv_ns"].append(recv_ns)
        c["event"].append(event)
        c["reason"].append(reason)
        c["count"].append(count)
        self.rows += 1


def new_buffers() -> dict[str, ChannelBuffer]:
    buffers: dict[str, ChannelBuffer] = {
        "orderbook": BookBuffer(), "trades": TradeBuffer(), "ticker": TickerBuffer(), "events": EventBuffer(),
    }
    assert set(buffers) == set(CHANNEL_SCHEMAS) and EVENTS is CHANNEL_SCHEMAS["events"]
    return buffers
