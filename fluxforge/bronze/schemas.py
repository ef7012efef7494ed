"""Bronze schemas: the raw rows the collector lands and the ETL reads (DESIGN decision 3).

One Arrow schema per channel.  The same schema is used for the active Arrow IPC
journal and the finished ZSTD Parquet file, so recovery and conversion never
re-shape data.  docs/schemas.md documents every column.

Order books are recorded losslessly (format 2): one row per book message, of
`kind` "snapshot" (the book is (re)initialised to exactly these levels, best
first, at the depth the exchange gave) or "delta" (each listed level's new
absolute size, in message order; size 0 deletes the level), with the
exchange's sequence (`nonce`), its link to the previous message (`prev_nonce`)
and its checksum where it has them.  Levels are struct-of-arrays list columns
(`bid_px`, `bid_sz`, `ask_px`, `ask_sz`) so the ETL turns them into numpy
arrays with `list_flatten` + offsets and no per-row Python.  Format 1 segments
(every row a top-N book) are read as if every row were a `snapshot`.

Times: `timestamp` is the exchange's event time in ms since the epoch (ccxt's
convention, null when the exchange sends none); `recv_ns` is `time.time_ns()`
when the message reached the collector.
"""
from __future__ import annotations

import pyarrow as pa

FORMAT_VERSION = 2
BOOK_SNAPSHOT = "snapshot"
BOOK_DELTA = "delta"

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
    pa.field("kind", pa.string(), nullable=False),  # BOOK_SNAPSHOT | BOOK_DELTA
    pa.field("nonce", pa.int64()),        # Binance `u` / REST lastUpdateId, OKX seqId, Coinbase sequence_num
                                          # (an order key per connection, not a chain), Kraken null
    pa.field("prev_nonce", pa.int64()),   # Binance `U` - 1, OKX prevSeqId: the last id before this message
    pa.field("checksum", pa.int64()),     # OKX CRC32 (signed, as sent) of the book after this message
    pa.field("bid_px", pa.list_(pa.float64())),
    pa.field("bid_sz", pa.list_(pa.float64())),
    pa.field("ask_px", pa.list_(pa.float64())),
    pa.field("ask_sz", pa.list_(pa.float64())),
])

# Columns format 2 added to ORDERBOOK; a format-1 file lacks them (read its rows as snapshots).
BOOK_V2_COLUMNS = ("kind", "prev_nonce", "checksum")

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

# One row per candle update (ccxt `watch_ohlcv`): an open candle is re-sent while it is open,
# and every update is kept (bronze is raw).  `timestamp` is the candle's OPEN time (ccxt's
# OHLCV[0]; the exchange's event time is not part of ccxt's candle); the final value of a
# candle is the last row (in recv_ns order) per (exchange, symbol, timeframe, timestamp).
OHLCV = pa.schema(_COMMON + [
    pa.field("timeframe", pa.string(), nullable=False),  # ccxt unified timeframe, e.g. '1m'
    pa.field("open", pa.float64()),
    pa.field("high", pa.float64()),
    pa.field("low", pa.float64()),
    pa.field("close", pa.float64()),
    pa.field("volume", pa.float64()),    # base units traded in the candle so far
])

# One row per best bid / best ask update (ccxt `watch_bids_asks`, Binance `bookTicker`).
BIDSASKS = pa.schema(_COMMON + [
    pa.field("bid", pa.float64()),
    pa.field("bid_size", pa.float64()),
    pa.field("ask", pa.float64()),
    pa.field("ask_size", pa.float64()),
])

# Gap / resync / reconnect / dropped / stall / disk_full / error markers, so the
# ETL can reset stateful features across them and operators can audit them.
EVENTS = pa.schema([
    pa.field("exchange", pa.string(), nullable=False),
    pa.field("symbol", pa.string()),     # null = whole exchange
    pa.field("channel", pa.string()),    # orderbook | trades | ticker | ohlcv | bidsasks | null
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
    "ohlcv": OHLCV,
    "bidsasks": BIDSASKS,
    "events": EVENTS,
}

# Channels a segment holds only when the collector records them (some exchange lists them in
# `channels`): no reader needs an empty file, so segments of the usual collector carry none.
# The others are always there (DESIGN decision 1), empty or not: the ETL's live follower
# tails their journals from a segment's creation and reads a missing one as "rotated".
OPTIONAL_CHANNELS = ("ohlcv", "bidsasks")


def segment_channels(recorded) -> list[str]:
    """The channels (CHANNEL_SCHEMAS order) a segment holds when `recorded` (channel names) are collected."""
    recorded = set(recorded)
    return [c for c in CHANNEL_SCHEMAS if c not in OPTIONAL_CHANNELS or c in recorded]


# Events after which a symbol's stateful features must be reset.
RESET_EVENTS = frozenset({"gap", "resync", "reconnect"})


# Book delta rows are high-entropy (each row lists different levels): dictionary pages do
# not pay for themselves there, sequence and time columns grow steadily.  Measured on the
# real Binance captures (bench/bronze_bytes.py), these settings take format-2 books from
# 198 to ~166 bytes per update (format 1's top-50 rows: 177) for the same finishing CPU.
_BOOK_PARQUET = {
    "compression": "zstd",
    "compression_level": 6,
    "use_dictionary": ["exchange", "symbol", "kind", "checksum"],
    "column_encoding": {name: "DELTA_BINARY_PACKED" for name in ("timestamp", "recv_ns", "nonce", "prev_nonce")},
}


def parquet_options(schema: pa.Schema) -> dict:
    """`pyarrow.parquet.ParquetWriter` keyword arguments for a channel's finished file."""
    return dict(_BOOK_PARQUET) if schema.equals(ORDERBOOK) else {"compression": "zstd"}


def channel_file(channel: str, finished: bool) -> str:
    """File name of a channel inside a segment directory: journal while active, Parquet after."""
    return f"{channel}.parquet" if finished else f"{channel}.arrows"


def listed_channel_file(channel: str, entry: object) -> str:
    """The file a manifest's `channels.<channel>` entry may name: only that channel's own Parquet file.

    Why: a manifest is data (restored from S3, copied by hand) and its `file`
    entries must never point a reader outside the segment directory or at
    another file; ValueError says what is wrong.
    """
    if channel not in CHANNEL_SCHEMAS:
        raise ValueError(f"unknown channel {channel!r}")
    expected = channel_file(channel, finished=True)
    name = entry.get("file") if isinstance(entry, dict) else None
    if name is not None and name != expected:
        raise ValueError(f"channel {channel!r} names file {name!r}; only {expected!r} is allowed")
    return expected
