"""What Daedalus (the system FluxForge replaces) wrote: its raw bronze columns, per channel.

Why written down here: `fluxforge import daedalus` must read months of that data
without the old code.  Reimplemented from Daedalus's public source
(jp-quant/daedalus: `ingestion/writers/parquet_writer.py` for the raw Parquet
schemas, `ingestion/writers/log_writer.py` + `ingestion/collectors/ccxt_collector.py`
for the NDJSON lines), never copied:

* every record carries `collected_at` (the collector's `exchange.milliseconds()`, i.e.
  the LOCAL clock in ms, read just after `capture_ts`) and `capture_ts` (local receive
  time, ISO 8601 in NDJSON, `timestamp[us, UTC]` in Parquet);
* Parquet: one file per channel segment, either flat (`<root>/<channel>/segment_<YYYYmmddTHH>_<n>.parquet`,
  symbols as ccxt writes them) or partitioned
  (`<channel>/exchange=/symbol=/year=/month=/day=/hour=/segment_*.parquet`), where the
  `exchange`/`symbol` columns hold the *sanitised* value of the directory (`/\\:*?"<>|` -> `-`,
  so `BTC/USD` is stored as `BTC-USD`) and year..hour repeat the path;
* missing values were written as defaults: `timestamp` 0, book `nonce` 0, trade `side` "",
  trade `trade_id` "" (or "None"), `info_json` "{}" (the later collector stripped `info`);
* NDJSON: one JSON object per line, `{"type", "exchange", "symbol", "method", "data",
  "collected_at", "capture_ts"}` with `data` the ccxt unified ticker / trade list / order book;
* `ohlcv` and `bidask` records (`watchOHLCV`, `watchBidsAsks`) have no Parquet schema of their
  own: the Parquet writer stored them in its generic schema (`type`, `method`, `data_json` = the
  record's `data` as JSON).  `ohlcv` data is ccxt's candle list `[[open time ms, o, h, l, c, v],
  ...]` for the record's symbol, at the timeframe ccxt's `watch_ohlcv` defaults to (Daedalus
  never passed one); `bidask` data is ccxt's `{symbol: ticker}` map (`bid`, `bidVolume`, `ask`,
  `askVolume`, `timestamp`, `info`, the rest of the ticker null), for the record's symbol or, when
  Daedalus watched every market (empty symbol list), with no record symbol at all.
"""
from __future__ import annotations

import pyarrow as pa

from ..bronze.schemas import EVENTS

# The channels Daedalus's ccxt collector named (METHOD_TO_CHANNEL), and the bronze channel of each.
CHANNELS = ("ticker", "trades", "orderbook", "ohlcv", "bidask")
BRONZE_CHANNEL = {"ticker": "ticker", "trades": "trades", "orderbook": "orderbook", "ohlcv": "ohlcv",
                  "bidask": "bidsasks", "events": "events"}
# Channels the old Parquet writer kept only as `data_json` (its generic schema).
GENERIC_CHANNELS = ("ohlcv", "bidask")

# Exchange ids Daedalus used that ccxt.pro (and so FluxForge) spells otherwise: ccxt.pro 4.5 has no
# `coinbaseadvanced`, Coinbase Advanced Trade is `coinbase`.  The config translator and the data
# import both rename by this map, so imported data and newly collected data are one stream.
EXCHANGE_RENAMES = {"coinbaseadvanced": "coinbase"}

LEVEL = pa.list_(pa.struct([pa.field("price", pa.float64()), pa.field("size", pa.float64())]))

_COMMON = [
    pa.field("collected_at", pa.int64()),
    pa.field("capture_ts", pa.timestamp("us", tz="UTC")),
    pa.field("exchange", pa.string()),
    pa.field("symbol", pa.string()),
]

# Column order and types as the old writer declared them (partition columns year..hour left out:
# they only repeat capture_ts).  `info_json` is accepted on every channel when present.
OLD_SCHEMAS: dict[str, pa.Schema] = {
    "ticker": pa.schema(_COMMON + [pa.field(n, pa.float64()) for n in (
        "bid", "ask", "bid_volume", "ask_volume", "last", "open", "high", "low", "close", "vwap",
        "base_volume", "quote_volume", "change", "percentage")] + [
        pa.field("timestamp", pa.int64()), pa.field("info_json", pa.string())]),
    "trades": pa.schema(_COMMON + [
        pa.field("trade_id", pa.string()), pa.field("timestamp", pa.int64()), pa.field("side", pa.string()),
        pa.field("price", pa.float64()), pa.field("amount", pa.float64()), pa.field("cost", pa.float64()),
        pa.field("info_json", pa.string())]),
    "orderbook": pa.schema(_COMMON + [
        pa.field("timestamp", pa.int64()), pa.field("nonce", pa.int64()),
        pa.field("bids", LEVEL), pa.field("asks", LEVEL), pa.field("info_json", pa.string()),
        # the import's own: null (every Daedalus ccxt book row) = a whole book; "delta" only from the
        # native Coinbase collector's l2_data updates (daedalus_coinbase)
        pa.field("kind", pa.string())]),
    # The rows the import shapes from generic `data_json` records (no Daedalus schema of their own);
    # `timeframe` is known only for native Coinbase candles (null: ccxt's watch_ohlcv default).
    "ohlcv": pa.schema(_COMMON + [pa.field("timestamp", pa.int64())] + [pa.field(n, pa.float64()) for n in (
        "open", "high", "low", "close", "volume")] + [pa.field("timeframe", pa.string())]),
    # gap / reconnect events the import derives (the native Coinbase messages' sequence_num), already bronze
    "events": EVENTS,
    "bidask": pa.schema(_COMMON + [pa.field(n, pa.float64()) for n in ("bid", "bid_volume", "ask", "ask_volume")] + [
        pa.field("timestamp", pa.int64()), pa.field("info_json", pa.string())]),
}

# ccxt unified key -> old column (the old writer's renames); keys not listed keep their name.
TICKER_KEYS = {"bidVolume": "bid_volume", "askVolume": "ask_volume", "baseVolume": "base_volume",
               "quoteVolume": "quote_volume"}

# ccxt keys the old Parquet writer stored or that bronze derives; any other key of an NDJSON
# `data` object is information with no place in bronze and is counted as unmapped.
KNOWN_DATA_KEYS = {
    "ticker": {"symbol", "timestamp", "datetime", "info", "bid", "ask", "bidVolume", "askVolume", "last",
               "open", "high", "low", "close", "vwap", "baseVolume", "quoteVolume", "change", "percentage"},
    "trades": {"symbol", "timestamp", "datetime", "info", "id", "side", "price", "amount", "cost"},
    "orderbook": {"symbol", "timestamp", "datetime", "nonce", "bids", "asks", "info"},
    "bidask": {"symbol", "timestamp", "datetime", "info", "bid", "ask", "bidVolume", "askVolume"},
}


def restore_symbol(value: str) -> str:
    """The ccxt symbol behind a sanitised partition value: `BTC-USD` -> `BTC/USD`,
    `BTC-USDT-USDT` -> `BTC/USDT:USDT`, `BTC-USDT-USDT-240329` -> `BTC/USDT:USDT-240329`.

    Why a rule and not a lookup: the old writer replaced `/` and `:` by `-` in the data too,
    so the original is gone; ccxt's symbol grammar (BASE/QUOTE[:SETTLE[-EXPIRY...]]) gives it
    back whenever BASE and QUOTE have no `-` of their own (`--symbol` overrides the rest).
    A value already holding `/`, or without `-`, is returned unchanged.
    """
    if "/" in value or "-" not in value:
        return value
    parts = value.split("-")
    out = f"{parts[0]}/{parts[1]}"
    if len(parts) > 2:
        out += ":" + "-".join(parts[2:])
    return out
