"""A test-side Daedalus writer: produces the old system's raw files from ccxt-shaped records.

Why in the tests and written separately from fluxforge/migrate: the import must be
checked against data shaped the way Daedalus's own writer code paths shaped it, not
against the importer's idea of it.  Reimplemented from Daedalus's public source
(jp-quant/daedalus `ingestion/collectors/ccxt_collector.py` builds the records,
`ingestion/writers/log_writer.py` writes NDJSON, `ingestion/writers/parquet_writer.py`
writes Parquet, flat in its first version and partitioned later), including its
defaults for missing values (0, "", "{}", str(None)) and its sanitised partition values.
"""
from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

_LEVEL = pa.list_(pa.struct([pa.field("price", pa.float64()), pa.field("size", pa.float64())]))
_HEAD = [("collected_at", pa.int64()), ("capture_ts", pa.timestamp("us", tz="UTC")),
         ("exchange", pa.string()), ("symbol", pa.string())]
_PARTS = [("year", pa.int32()), ("month", pa.int32()), ("day", pa.int32()), ("hour", pa.int32())]
_BODY = {
    "ticker": [(n, pa.float64()) for n in ("bid", "ask", "bid_volume", "ask_volume", "last", "open", "high", "low",
                                            "close", "vwap", "base_volume", "quote_volume", "change", "percentage")]
    + [("timestamp", pa.int64()), ("info_json", pa.string())],
    "trades": [("trade_id", pa.string()), ("timestamp", pa.int64()), ("side", pa.string()), ("price", pa.float64()),
               ("amount", pa.float64()), ("cost", pa.float64()), ("info_json", pa.string())],
    "orderbook": [("timestamp", pa.int64()), ("nonce", pa.int64()), ("bids", _LEVEL), ("asks", _LEVEL)],
}
# The old writer had no schema for ohlcv / bidask records: its generic one keeps the record as JSON.
_GENERIC = [("type", pa.string()), ("method", pa.string()), ("data_json", pa.string())]
_METHOD = {"ticker": "watchTicker", "trades": "watchTrades", "orderbook": "watchOrderBook",
           "ohlcv": "watchOHLCV", "bidask": "watchBidsAsks"}


def schema(channel: str, partitioned: bool) -> pa.Schema:
    return pa.schema(_HEAD + (_PARTS if partitioned else []) + _BODY.get(channel, _GENERIC))


def sanitise(value) -> str:
    return re.sub(r'[/\\:*?"<>|]', "-", str(value) if value is not None else "unknown")


def record(channel: str, exchange: str, symbol: str, data, capture: datetime) -> dict:
    """What the ccxt collector queued: capture_ts first, then collected_at from the ms clock."""
    return {"type": channel, "exchange": exchange, "symbol": symbol, "method": _METHOD.get(channel, channel),
            "data": data, "collected_at": int(capture.timestamp() * 1000) + 1, "capture_ts": capture.isoformat()}


def _ts(value):
    if not value:
        return None
    return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)


def old_rows(rec: dict) -> list[dict]:
    """The old Parquet writer's rows for one record (its `_convert_*_records`, defaults included)."""
    base = {"collected_at": rec.get("collected_at", 0), "capture_ts": _ts(rec.get("capture_ts")),
            "exchange": rec.get("exchange"), "symbol": rec.get("symbol")}
    data = rec.get("data", {})
    if rec.get("type") not in _BODY:  # _convert_generic_records: the record's data as compact JSON
        return [dict(base, exchange=rec.get("exchange", ""), symbol=rec.get("symbol", ""), type=rec.get("type", ""),
                     method=rec.get("method", ""), data_json=json.dumps(data, separators=(",", ":")))]
    if rec["type"] == "ticker":
        return [dict(base, bid=data.get("bid"), ask=data.get("ask"), bid_volume=data.get("bidVolume"),
                     ask_volume=data.get("askVolume"), last=data.get("last"), open=data.get("open"),
                     high=data.get("high"), low=data.get("low"), close=data.get("close"), vwap=data.get("vwap"),
                     base_volume=data.get("baseVolume"), quote_volume=data.get("quoteVolume"),
                     change=data.get("change"), percentage=data.get("percentage"),
                     timestamp=data.get("timestamp", 0),
                     info_json=json.dumps(data.get("info", {}), separators=(",", ":")))]
    if rec["type"] == "trades":
        trades = [data] if isinstance(data, dict) else data
        return [dict(base, trade_id=str(t.get("id", "")), timestamp=t.get("timestamp", 0), side=t.get("side", ""),
                     price=t.get("price"), amount=t.get("amount"), cost=t.get("cost"),
                     info_json=json.dumps(t.get("info", {}), separators=(",", ":"))) for t in trades]
    return [dict(base, timestamp=data.get("timestamp", 0), nonce=data.get("nonce", 0),
                 bids=[{"price": b[0], "size": b[1]} for b in data.get("bids", [])],
                 asks=[{"price": a[0], "size": a[1]} for a in data.get("asks", [])])]


def _hour(rec: dict) -> str:
    return _ts(rec["capture_ts"]).strftime("%Y%m%dT%H")


def write_ndjson(root: Path, records: list[dict]) -> list[Path]:
    """LogWriter: `segment_<YYYYmmddTHH>_<n>.ndjson` per hour, compact JSON lines, `default=str`."""
    by_hour = defaultdict(list)
    for rec in records:
        by_hour[_hour(rec)].append(rec)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for hour, recs in sorted(by_hour.items()):
        path = root / f"segment_{hour}_00001.ndjson"
        path.write_text("".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in recs))
        paths.append(path)
    return paths


def write_parquet(root: Path, records: list[dict], partitioned: bool) -> list[Path]:
    """StreamingParquetWriter: flat `<channel>/segment_<hour>_<n>.parquet` (first version, raw symbols),
    or partitioned `<channel>/exchange=/symbol=/year=/month=/day=/hour=/segment_*.parquet` with the
    sanitised exchange/symbol and the year..hour columns in the data too."""
    groups = defaultdict(list)
    for rec in records:
        cap = _ts(rec["capture_ts"])
        if partitioned:
            key = (rec.get("type", "unknown"), sanitise(rec.get("exchange", "unknown")),
                   sanitise(rec.get("symbol", "unknown")), cap.year, cap.month, cap.day, cap.hour)
        else:
            key = (rec.get("type", "unknown"), _hour(rec))
        groups[key].append(rec)
    paths = []
    for key, recs in sorted(groups.items()):
        channel = key[0]
        if partitioned:
            _, ex, sym, y, m, d, h = key
            folder = root / channel / f"exchange={ex}" / f"symbol={sym}" / f"year={y}" / f"month={m}" / f"day={d}" / f"hour={h}"
            name = f"segment_{y:04d}{m:02d}{d:02d}T{h:02d}_00001.parquet"
            rows = [dict(r, exchange=ex, symbol=sym, year=y, month=m, day=d, hour=h) for rec in recs for r in old_rows(rec)]
        else:
            folder, name = root / channel, f"segment_{key[1]}_00001.parquet"
            rows = [r for rec in recs for r in old_rows(rec)]
        folder.mkdir(parents=True, exist_ok=True)
        sch = schema(channel, partitioned)
        with pq.ParquetWriter(folder / name, sch, compression="zstd", compression_level=3) as w:
            w.write_table(pa.Table.from_pylist(rows, schema=sch))
        paths.append(folder / name)
    return paths


def synthetic_records(start: datetime, minutes: int, symbols=("BTC/USDT", "ETH/USDT:USDT"),
                      exchange: str = "binance", seed: int = 7, every_s: float = 2.0) -> list[dict]:
    """ccxt-shaped ticker / trades / order book records, strictly increasing capture times,
    with the missing values and extra keys real ccxt data has (None fields, `info`, `takerOrMaker`,
    a book without nonce, a trade without id or side)."""
    rng = random.Random(seed)
    out = []
    t = start
    n = 0
    end = start + timedelta(minutes=minutes)
    while t < end:
        for sym in symbols:
            n += 1
            t += timedelta(microseconds=rng.randint(1, 400_000))
            mid = 100.0 + 10 * (sym != symbols[0]) + rng.uniform(-1, 1)
            ms = int(t.timestamp() * 1000) - rng.randint(0, 50)
            bids = [[round(mid - 0.01 * (i + 1), 2), round(rng.uniform(0.1, 5), 4)] for i in range(10)]
            asks = [[round(mid + 0.01 * (i + 1), 2), round(rng.uniform(0.1, 5), 4)] for i in range(10)]
            book = {"bids": bids, "asks": asks, "timestamp": ms, "datetime": None, "nonce": 10_000 + n, "symbol": sym}
            if n % 17 == 0:  # no exchange time: None, or no key at all (the old writer stored 0)
                if n % 2:
                    book["timestamp"] = None
                else:
                    del book["timestamp"]
            if n % 3 == 1:  # no sequence: None, or no key at all (the old writer stored 0)
                book["nonce"] = None
            elif n % 3 == 2:
                del book["nonce"]
            out.append(record("orderbook", exchange, sym, book, t))
            t += timedelta(microseconds=rng.randint(1, 400_000))
            trades = []
            for k in range(rng.randint(1, 3)):
                px, qty = round(mid + rng.uniform(-0.05, 0.05), 2), round(rng.uniform(0.001, 1), 5)
                trades.append({"id": None if (n + k) % 41 == 0 else str(5_000_000 + 10 * n + k),
                               "timestamp": ms, "datetime": None, "symbol": sym,
                               "side": None if (n + k) % 29 == 0 else rng.choice(["buy", "sell"]),
                               "takerOrMaker": "taker" if k == 0 else None, "price": px, "amount": qty,
                               "cost": px * qty if (n + k) % 11 else px * qty * 1.5, "fee": None, "fees": [],
                               "order": None, "type": None, "info": {"t": 5_000_000 + 10 * n + k, "m": k % 2 == 0}})
                if (n + k) % 82 == 0:  # no id / side key at all (the old writer stored "" for those)
                    del trades[-1]["id"], trades[-1]["side"]
            out.append(record("trades", exchange, sym, trades, t))
            if n % 5 == 0:
                t += timedelta(microseconds=rng.randint(1, 400_000))
                last = round(mid, 2)
                out.append(record("ticker", exchange, sym, {
                    "symbol": sym, "timestamp": ms, "datetime": None, "high": last + 1, "low": last - 1,
                    "bid": last - 0.01, "bidVolume": 1.5, "ask": last + 0.01, "askVolume": None, "vwap": None,
                    "open": last - 0.5, "close": last, "last": last, "previousClose": None, "change": 0.5,
                    "percentage": 0.5, "average": None, "baseVolume": 1234.5, "quoteVolume": 123450.0,
                    "info": {"E": ms} if n % 10 else {}}, t))
        t += timedelta(seconds=every_s)
    return out


def candle_and_bidask_records(start: datetime, minutes: int, symbols=("BTC/USDT", "ETH/USDT:USDT"),
                              exchange: str = "binance", seed: int = 11, every_s: float = 3.0) -> list[dict]:
    """What Daedalus's `_symbol_loop` queued for `watchOHLCV` (ccxt's candle list: the open candle,
    and the closed one beside it when a minute turned) and `watchBidsAsks` (ccxt's `{symbol: ticker}`
    map as `safe_ticker` fills it: the rest of the ticker None, `info` the raw bookTicker), plus the
    `_method_loop` records of `watchBidsAsks()` over every market (no record symbol, several
    symbols in `data`)."""
    rng = random.Random(seed)
    out = []
    t = start
    n = 0
    end = start + timedelta(minutes=minutes)
    empty = dict.fromkeys(("timestamp", "datetime", "high", "low", "vwap", "open", "close", "last", "previousClose",
                           "change", "percentage", "average", "baseVolume", "quoteVolume"))

    def quote(sym: str, mid: float) -> dict:
        bid, ask = round(mid - 0.01, 2), round(mid + 0.01, 2)
        q = dict(empty, symbol=sym, bid=bid, bidVolume=round(rng.uniform(0.1, 9), 4), ask=ask,
                 askVolume=None if n % 13 == 0 else round(rng.uniform(0.1, 9), 4),
                 info={"u": 40_000_000 + n, "s": sym.replace("/", ""), "b": str(bid), "a": str(ask)})
        if n % 7 == 0:  # an exchange that sends a time (binance futures' bookTicker has E)
            q["timestamp"] = int(t.timestamp() * 1000) - 3
        return q

    while t < end:
        for sym in symbols:
            n += 1
            mid = 100.0 + 10 * (sym != symbols[0]) + rng.uniform(-1, 1)
            t += timedelta(microseconds=rng.randint(1, 400_000))
            minute = int(t.timestamp()) // 60 * 60_000
            o, c = round(mid + rng.uniform(-0.2, 0.2), 2), round(mid, 2)
            candle = [minute, o, max(o, c) + 0.05, min(o, c) - 0.05, c, None if n % 19 == 0 else round(rng.uniform(1, 50), 3)]
            candles = [[minute - 60_000, o, o + 0.1, o - 0.1, o, 12.5], candle] if n % 9 == 0 else [candle]
            out.append(record("ohlcv", exchange, sym, candles, t))
            t += timedelta(microseconds=rng.randint(1, 400_000))
            out.append(record("bidask", exchange, sym, {sym: quote(sym, mid)}, t))
        if n % 4 == 0:  # watchBidsAsks() with no symbols: every market in one record, none on the record
            t += timedelta(microseconds=rng.randint(1, 400_000))
            rec = record("bidask", exchange, "", {s: quote(s, 100.0 + i) for i, s in enumerate(symbols)}, t)
            del rec["symbol"]
            out.append(rec)
        t += timedelta(seconds=every_s)
    return out


def expected_bronze(records: list[dict]) -> dict[str, list[dict]]:
    """The bronze rows each record must become, written from the records themselves (not the importer)."""
    out = {"orderbook": [], "trades": [], "ticker": [], "ohlcv": [], "bidsasks": []}
    for rec in records:
        cap = _ts(rec["capture_ts"])
        recv = int((cap - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1)) * 1000
        base = {"exchange": rec["exchange"], "symbol": rec.get("symbol"), "recv_ns": recv}
        d = rec["data"]
        if rec["type"] == "orderbook":
            out["orderbook"].append(dict(base, timestamp=d.get("timestamp"), kind="snapshot", nonce=d.get("nonce"),
                                         prev_nonce=None, checksum=None,
                                         bid_px=[b[0] for b in d["bids"]], bid_sz=[b[1] for b in d["bids"]],
                                         ask_px=[a[0] for a in d["asks"]], ask_sz=[a[1] for a in d["asks"]]))
        elif rec["type"] == "ohlcv":  # Daedalus never passed a timeframe: ccxt's default, 1m on binance
            for c in d:
                out["ohlcv"].append(dict(base, timestamp=c[0], timeframe="1m", open=c[1], high=c[2], low=c[3],
                                         close=c[4], volume=c[5]))
        elif rec["type"] == "bidask":
            for sym, q in d.items():
                out["bidsasks"].append(dict(base, symbol=sym, timestamp=q["timestamp"], bid=q["bid"],
                                            bid_size=q["bidVolume"], ask=q["ask"], ask_size=q["askVolume"]))
        elif rec["type"] == "trades":
            for tr in d:
                out["trades"].append(dict(base, timestamp=tr["timestamp"], trade_id=tr.get("id"),
                                          price=tr["price"], amount=tr["amount"], side=tr.get("side")))
        else:
            out["ticker"].append(dict(base, timestamp=d["timestamp"], bid=d["bid"], bid_size=d["bidVolume"],
                                      ask=d["ask"], ask_size=d["askVolume"], last=d["last"], open=d["open"],
                                      high=d["high"], low=d["low"], base_volume=d["baseVolume"],
                                      quote_volume=d["quoteVolume"], vwap=d["vwap"], percentage=d["percentage"]))
    return out
