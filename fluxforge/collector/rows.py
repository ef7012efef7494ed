"""Column buffers that turn ccxt structures into bronze rows (DESIGN decision 3).

Why columnar from the first byte: the collector's CPU budget is a fraction of
what ccxt itself spends per message, so rows are appended straight into
per-column Python lists (book levels into one flat list plus offsets) and
become an Arrow RecordBatch in a few C calls at flush time -- no per-row dicts,
no per-row Arrow calls.

Why `prepare` before `append`: one value Arrow cannot store (a nonce >= 2**63,
a string where a price belongs) used to fail the whole flush at conversion
time and kill the writer.  Each data row is checked and coerced to its column
types first (`prepare` raises `BadRow`, touching nothing), so a bad row is
dropped alone, before it is admitted, and a row is never half-appended.
"""
from __future__ import annotations

from itertools import chain
from typing import Any

import pyarrow as pa

from ..bronze.schemas import BIDSASKS, BOOK_DELTA, BOOK_SNAPSHOT, CHANNEL_SCHEMAS, EVENTS, OHLCV, ORDERBOOK, TICKER
from .book_chain import BookChainGuard

_chain = chain.from_iterable
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_FOLLOWS_BAD = "follows an unconvertible book row"
_NAN = float("nan")


def level_values(values: list) -> pa.Array:
    """Book level values (a flat list) as float64: numbers and numeric strings as `float()` reads
    them, None as NaN (a level without a value, as numpy's float conversion had it); anything
    else raises TypeError/ValueError.  Arrow converts a list of floats in one C loop; the rest
    (rare) take the Python loop.  Not numpy: the collector runs without it (unused_modules.py)."""
    try:
        arr = pa.array(values, pa.float64())
        if not arr.null_count:
            return arr
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    return pa.array([_NAN if v is None else float(v) for v in values], pa.float64())


class BadRow(ValueError):
    """A value that cannot be stored in its bronze column (the message names it); the row is dropped."""


def as_int64(name: str, v: Any) -> int | None:
    """`v` as an int64 column value (ints, integral floats, digit strings), else `BadRow`."""
    if type(v) is int and INT64_MIN <= v <= INT64_MAX:
        return v
    if v is None:
        return None
    try:
        if isinstance(v, float) and not v.is_integer():
            raise ValueError
        i = int(v)
    except (TypeError, ValueError, OverflowError):
        raise BadRow(f"{name} {v!r} is not an integer") from None
    if not INT64_MIN <= i <= INT64_MAX:
        raise BadRow(f"{name} {v!r} does not fit int64")
    return i


def as_float(name: str, v: Any) -> float | None:
    """`v` as a float64 column value (numbers, numeric strings), else `BadRow`."""
    if v is None or type(v) is float:
        return v
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        raise BadRow(f"{name} {v!r} is not a number") from None


def as_str(v: Any) -> str | None:
    return v if v is None or type(v) is str else str(v)


class ChannelBuffer:
    """Rows of one channel, column by column, since the last flush."""

    __slots__ = ("channel", "schema", "cols", "rows", "bad")

    def __init__(self, channel: str):
        self.channel = channel
        self.schema = CHANNEL_SCHEMAS[channel]
        self.cols: dict[str, list] = {name: [] for name in self.schema.names}
        self.rows = 0
        self.bad: list[tuple[str, str, str]] = []   # (exchange, symbol, reason) of rows `to_batch` dropped

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

    A row is `(head, bids, asks, flat)`: `head` the checked scalar columns
    (`prepare_*` raise `BadRow` before anything is appended), `flat` whether
    the levels are already `px, sz, ...`.
    """

    __slots__ = ("bids", "asks", "bid_off", "ask_off", "_head_cols", "broken_after")

    HEAD = ("exchange", "symbol", "timestamp", "recv_ns", "kind", "nonce", "prev_nonce", "checksum")

    def __init__(self) -> None:
        super().__init__("orderbook")
        self.bids: list[float] = []   # px, sz interleaved
        self.asks: list[float] = []
        self.bid_off = [0]            # offsets in levels
        self.ask_off = [0]
        self._head_cols = [self.cols[name] for name in self.HEAD]
        self.broken_after: set[tuple[str, str]] = set()  # books whose last row here was dropped (`bad`)

    @staticmethod
    def _extend(flat: list, levels: list) -> None:
        if levels and len(levels[0]) == 2 and len(levels[-1]) == 2:
            flat.extend(_chain(levels))
        else:
            for lv in levels:
                flat.append(lv[0])
                flat.append(lv[1])

    @staticmethod
    def _head(exchange: str, symbol: str, kind: str, timestamp: Any, recv_ns: int, nonce: Any,
              prev_nonce: Any, checksum: Any) -> tuple:
        return (exchange, symbol, as_int64("timestamp", timestamp), recv_ns, kind, as_int64("nonce", nonce),
                as_int64("prev_nonce", prev_nonce), as_int64("checksum", checksum))

    @classmethod
    def prepare_snapshot(cls, exchange: str, symbol: str, timestamp: Any, recv_ns: int, nonce: Any,
                         prev_nonce: Any, checksum: Any, bids: list, asks: list) -> tuple:
        """A book (re)initialised to `bids`/`asks` (`[px, sz, ...]` levels, best first)."""
        return cls._head(exchange, symbol, BOOK_SNAPSHOT, timestamp, recv_ns, nonce, prev_nonce, checksum), \
            bids, asks, False

    @classmethod
    def prepare_delta(cls, exchange: str, symbol: str, timestamp: Any, recv_ns: int, nonce: Any,
                      prev_nonce: Any, checksum: Any, bid_flat: list, ask_flat: list) -> tuple:
        """Changed levels in message order, flat `px, sz, px, sz, ...` (sz 0 = delete)."""
        return cls._head(exchange, symbol, BOOK_DELTA, timestamp, recv_ns, nonce, prev_nonce, checksum), \
            bid_flat, ask_flat, True

    @classmethod
    def prepare(cls, exchange: str, symbol: str, book: Any, depth: int, recv_ns: int) -> tuple:
        """The top `depth` levels of `book` as a snapshot row (sources we only see as whole books).

        Level values are not checked here (a per-value check would double the
        cost of a deep book); `to_batch` drops a row whose levels do not convert.
        """
        return cls.prepare_snapshot(exchange, symbol, book.get("timestamp"), recv_ns, book.get("nonce"), None, None,
                                    book["bids"][:depth], book["asks"][:depth])

    def append(self, row: tuple) -> None:
        head, bids, asks, flat = row
        for col, v in zip(self._head_cols, head):
            col.append(v)
        if flat:
            self.bids.extend(bids)
            self.asks.extend(asks)
            self.bid_off.append(self.bid_off[-1] + (len(bids) >> 1))
            self.ask_off.append(self.ask_off[-1] + (len(asks) >> 1))
        else:
            self._extend(self.bids, bids)
            self._extend(self.asks, asks)
            self.bid_off.append(self.bid_off[-1] + len(bids))
            self.ask_off.append(self.ask_off[-1] + len(asks))
        self.rows += 1

    def add(self, exchange: str, symbol: str, book: Any, depth: int, recv_ns: int) -> None:
        self.append(self.prepare(exchange, symbol, book, depth, recv_ns))

    def add_snapshot(self, *args: Any) -> None:
        self.append(self.prepare_snapshot(*args))

    def add_delta(self, *args: Any) -> None:
        self.append(self.prepare_delta(*args))

    def to_batch(self) -> pa.RecordBatch:
        try:
            levels = [level_values(flat[part::2]) for flat in (self.bids, self.asks) for part in (0, 1)]
        except (TypeError, ValueError, OverflowError):
            return self._without_bad_levels().to_batch()
        c = self.cols
        bid_off = pa.array(self.bid_off, pa.int32())
        ask_off = pa.array(self.ask_off, pa.int32())
        arrays = [pa.array(c[name], ORDERBOOK.field(name).type) for name in self.HEAD] + [
            pa.ListArray.from_arrays(off, values) for off, values in zip((bid_off, bid_off, ask_off, ask_off), levels)]
        return pa.RecordBatch.from_arrays(arrays, schema=ORDERBOOK)

    def row_at(self, i: int) -> tuple:
        """Row `i` as `append` takes it (levels flat)."""
        b0, b1, a0, a1 = 2 * self.bid_off[i], 2 * self.bid_off[i + 1], 2 * self.ask_off[i], 2 * self.ask_off[i + 1]
        return tuple(self.cols[name][i] for name in self.HEAD), self.bids[b0:b1], self.asks[a0:a1], True

    def select(self, rows: list[int]) -> "BookBuffer":
        """A new buffer holding only `rows` (indices, in order)."""
        out = BookBuffer()
        for i in rows:
            out.append(self.row_at(i))
        return out

    def _without_bad_levels(self) -> "BookBuffer":
        """A copy without the rows whose level values are not numbers (listed in `self.bad`).

        A later delta of the same book continues the dropped row, so it is dropped too until a
        snapshot row restarts that book: `BookChainGuard`'s rule, the one the writer applies across
        flushes.  Books still broken at the end go in `broken_after`."""
        good, chains = BookBuffer(), BookChainGuard()
        chains.lost(self.broken_after, _FOLLOWS_BAD)
        exchanges, symbols, kinds = self.cols["exchange"], self.cols["symbol"], self.cols["kind"]
        for i in range(self.rows):
            key = (exchanges[i], symbols[i])
            row = self.row_at(i)
            try:
                level_values(row[1]), level_values(row[2])
            except (TypeError, ValueError, OverflowError) as e:
                self.bad.append((*key, f"unconvertible book level: {e}"))
                chains.lost([key], _FOLLOWS_BAD)
                continue
            reason = chains.skip(key, kinds[i])
            if reason is not None:
                self.bad.append((*key, reason))
                continue
            good.append(row)
        self.broken_after = set(chains.broken)
        return good


class RowBuffer(ChannelBuffer):
    """A channel of plain columns: `prepare` (per channel) gives the row in schema order."""

    __slots__ = ()
    CHANNEL = ""

    def __init__(self) -> None:
        super().__init__(self.CHANNEL)

    @staticmethod
    def prepare(exchange: str, symbol: str, *args: Any) -> tuple:
        raise NotImplementedError

    def append(self, row: tuple) -> None:
        for col, v in zip(self.cols.values(), row):
            col.append(v)
        self.rows += 1

    def add(self, exchange: str, symbol: str, *args: Any) -> None:
        self.append(self.prepare(exchange, symbol, *args))


class TradeBuffer(RowBuffer):
    __slots__ = ()
    CHANNEL = "trades"

    @staticmethod
    def prepare(exchange: str, symbol: str, trade: dict, recv_ns: int) -> tuple:
        return (exchange, symbol, as_int64("timestamp", trade.get("timestamp")), recv_ns, as_str(trade.get("id")),
                as_float("price", trade.get("price")), as_float("amount", trade.get("amount")),
                as_str(trade.get("side")))


# bronze ticker column -> ccxt unified ticker key
_TICKER_KEYS = [(name, key) for name, key in [
    ("bid", "bid"), ("bid_size", "bidVolume"), ("ask", "ask"), ("ask_size", "askVolume"),
    ("last", "last"), ("open", "open"), ("high", "high"), ("low", "low"),
    ("base_volume", "baseVolume"), ("quote_volume", "quoteVolume"), ("vwap", "vwap"),
    ("percentage", "percentage"),
]]
assert [n for n, _ in _TICKER_KEYS] == TICKER.names[4:]


class TickerBuffer(RowBuffer):
    __slots__ = ()
    CHANNEL = "ticker"

    @staticmethod
    def prepare(exchange: str, symbol: str, ticker: dict, recv_ns: int) -> tuple:
        return (exchange, symbol, as_int64("timestamp", ticker.get("timestamp")), recv_ns,
                *(as_float(key, ticker.get(key)) for _name, key in _TICKER_KEYS))


_OHLCV_VALUES = ("open", "high", "low", "close", "volume")  # ccxt OHLCV[1:6]
assert OHLCV.names[5:] == list(_OHLCV_VALUES)


class OhlcvBuffer(RowBuffer):
    """Candle updates as ccxt parsed them: `[open time ms, open, high, low, close, volume]`."""

    __slots__ = ()
    CHANNEL = "ohlcv"

    @staticmethod
    def prepare(exchange: str, symbol: str, timeframe: str, candle: list, recv_ns: int) -> tuple:
        if not isinstance(candle, (list, tuple)) or not candle:
            raise BadRow(f"candle {candle!r} is not a list")
        values = list(candle[1:6]) + [None] * (6 - min(len(candle), 6))
        return (exchange, symbol, as_int64("timestamp", candle[0]), recv_ns, str(timeframe),
                *(as_float(name, v) for name, v in zip(_OHLCV_VALUES, values)))


_BIDASK_KEYS = (("bid", "bid"), ("bid_size", "bidVolume"), ("ask", "ask"), ("ask_size", "askVolume"))
assert [n for n, _ in _BIDASK_KEYS] == BIDSASKS.names[4:]


class BidAskBuffer(RowBuffer):
    """Best bid / ask updates: the ccxt ticker `watch_bids_asks` resolves (bid, bidVolume, ask, askVolume)."""

    __slots__ = ()
    CHANNEL = "bidsasks"

    @staticmethod
    def prepare(exchange: str, symbol: str, ticker: dict, recv_ns: int) -> tuple:
        return (exchange, symbol, as_int64("timestamp", ticker.get("timestamp")), recv_ns,
                *(as_float(key, ticker.get(key)) for _name, key in _BIDASK_KEYS))


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
        "orderbook": BookBuffer(), "trades": TradeBuffer(), "ticker": TickerBuffer(), "ohlcv": OhlcvBuffer(),
        "bidsasks": BidAskBuffer(), "events": EventBuffer(),
    }
    assert set(buffers) == set(CHANNEL_SCHEMAS) and EVENTS is CHANNEL_SCHEMAS["events"]
    return buffers
