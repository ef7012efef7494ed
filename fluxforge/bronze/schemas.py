"""Bronze schemas: the raw rows the collector lands and the ETL reads (DESIGN decision 3).

One Arrow schema per channel.  The same schema is used for the active Arrow IPC
journal and the finished ZSTD Parquet file, so recovery and conversion never
re-shape data.  docs/schemas.md documents every column.

Book levels are struct-of-arrays list columns (`bid_px`, `bid_sz`, `ask_px`,
`ask_sz`) so the ETL turns them into 2-D numpy arrays with
`list_flatten` + reshape/offsets and no per-row Python.

Times: `timestamp` is the exchange's event time in ms since the epoch (ccxt's
convention, null when the exchange sends none); `recv_ns` is `time.time_ns()`
when the message reached the collector.
"""
from __future__ import annotations

import pyarrow as pa

FORMAT_VERSION = 2

_COMMON = [
    pa.field("exchange", pa.string(), nullable=False),
    pa.field("symbol", pa.string(), nullable=False),
    pa.field("timestamp", pa.int64()),
    pa.field("recv_ns", pa.int64(), nullable=False),
]

# One row per book message (format 2): `kind` "snapshot" (re)initialises the book to exactly
# these levels, "delta" lists each changed level's new absolute size (0 = delete).  `nonce`
# is the message's sequence, `prev_nonce` the exchange's link to the previous message,
# `checksum` the exchange's checksum of the book after it (OKX CRC32, signed).  Format 1
# segments (every row a top-N book, no kind/prev_nonce/checksum) are read as snapshots.
ORDERBOOK = pa.schema(_COMMON + [
    pa.field("kind", pa.string(), nullable=False),
    pa.field("nonce", pa.int64()),
    pa.field("prev_nonce", pa.int64()),
    pa.field("checksum", pa.int64()),
    pa.field("bid_px", pa.list_(pa.float64())),
    pa.field("bid_sz", pa.list_(pa.float64())),
    pa.field("ask_px", pa.list_(pa.float64())),
    pa.field("ask_sz", pa.list_(pa.float64())),
])

TRADES = pa.schema(_COMMON + [
    pa.field("trade_id", pa.string()),
    pa.field("price", pa.float64()),
    pa.field("amount", pa.float64()),
    pa.field("side", pa.string()),  # taker side: 'buy' | 'sell' (null if unknown)
])

TICKER = pa.schema(_COMMON + [
    pa.field("bid", pa.float64()),
    pa.field("bid_size", pa.float64()),
    pa.field("ask", pa.float64()),
    pa.field("ask_size", pa.float64()),
    pa.field("last", pa.float64()),
    pa.field("open", pa.float64()),
    pa.field("high", pa.float64()),
    pa.field("low", pa.float64()),
    pa.field("base_volume", pa.float64()),
    pa.field("quote_volume", pa.float64()),
    pa.field("vwap", pa.float64()),
    pa.field("percentage", pa.float64()),
])

# Gap / resync / reconnect / dropped / stall / disk_full / error markers, so the
# ETL can reset stateful features across them and operators can audit them.
EVENTS = pa.schema([
    pa.field("exchange", pa.string(), nullable=False),
    pa.field("symbol", pa.string()),     # null = whole exchange
    pa.field("channel", pa.string()),    # orderbook | trades | ticker | null
    pa.field("timestamp", pa.int64()),   # ms, local clock (exchange time unknown at a gap)
    pa.field("recv_ns", pa.int64(), nullable=False),
    pa.field("event", pa.string(), nullable=False),
    pa.field("reason", pa.string()),
    pa.field("count", pa.int64()),       # e.g. rows dropped
])

CHANNEL_SCHEMAS: dict[str, pa.Schema] = {
    "orderbook": ORDERBOOK,
    "trades": TRADES,
    "ticker": TICKER,
    "events": EVENTS,
}

# Events after which a symbol's stateful features must be reset.
RESET_EVENTS = frozenset({"gap", "resync", "reconnect"})


def channel_file(channel: str, finished: bool) -> str:
    """File name of a channel inside a segment directory: journal while active, Parquet after."""
    return f"{channel}.parquet" if finished else f"{channel}.arrows"
