"""Old Daedalus rows (its raw Parquet columns) -> FluxForge bronze rows, column by column.

Why one mapping for both old formats: the NDJSON reader first shapes its lines exactly
as Daedalus's own Parquet writer did (`daedalus_ndjson`), so Parquet files and NDJSON
lines meet here and are mapped by the same vectorised Arrow code (no per-row Python
for the months of Parquet).  What the mapping does, per column:

* `recv_ns` = `capture_ts` (µs, local receive time) in ns; `collected_at` (local ms,
  read just after) only where `capture_ts` is missing; a row with neither (or only the
  old default 0) is dropped;
* `timestamp` / book `nonce`: the old writer's default 0 ("missing") becomes null;
* trade `side` "" and `trade_id` "" / "None" (defaults for "missing") become null;
* ticker `bid_volume`/`ask_volume` -> `bid_size`/`ask_size`;
* books: each old row is a whole book (ccxt's, top `max_orderbook_depth`) and becomes a
  bronze `snapshot` row (a native Coinbase update, `kind` "delta", a `delta` row): `bids`/`asks` structs -> `bid_px`/`bid_sz`/`ask_px`/`ask_sz`, in
  the order stored; a level without price or size drops the row (counted);
* symbols written sanitised (`BTC-USD`) are given back their ccxt form (`restore_symbol`);
* exchange ids ccxt.pro spells otherwise (`coinbaseadvanced`) take ccxt.pro's id, as the
  translated config collects them (`EXCHANGE_RENAMES`), so old and new data are one stream;
* candles (`ohlcv`): one row per candle update, `timestamp` its open time, `timeframe` the one
  ccxt's `watch_ohlcv` defaults to on that exchange (what Daedalus asked for, `ccxt_facts`);
* best bid/ask (`bidask` -> bronze `bidsasks`): `bid_volume`/`ask_volume` -> `bid_size`/`ask_size`.

`unmapped_counts` says, per field with no bronze column, how many rows carried
information the import cannot keep (`close` only where it differs from `last`, `cost`
from price x amount, `change` from last - open, `info_json` where not empty).
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..bronze import schemas as bronze
from .ccxt_facts import default_ohlcv_timeframe
from .daedalus_schema import BRONZE_CHANNEL, EXCHANGE_RENAMES, OLD_SCHEMAS, restore_symbol

_TICKER_RENAMES = {"bid_volume": "bid_size", "ask_volume": "ask_size"}
_CANDLE = ("open", "high", "low", "close", "volume")
_EMPTY_INFO = ("", "{}", "null")


def conform(channel: str, table: pa.Table, fill: Mapping[str, str] | None = None) -> pa.Table:
    """`table` in the old schema of `channel`: columns cast to the old types, missing ones null
    (or taken from `fill`, e.g. a Hive path's `exchange=`), extra ones dropped.

    Raises ValueError naming the column when a value cannot be read as its old type."""
    schema = OLD_SCHEMAS[channel]
    n = table.num_rows
    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            if pa.types.is_timestamp(field.type) and pa.types.is_timestamp(col.type):
                col = pc.cast(col, pa.timestamp("us", tz="UTC"), safe=False)  # any unit / zone -> the old one
            elif not col.type.equals(field.type):
                try:
                    col = pc.cast(col, field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise ValueError(f"column {field.name!r}: {col.type} cannot be read as {field.type} "
                                     f"({str(e).splitlines()[0]})") from None
        elif fill and field.name in fill:
            col = pa.array([fill[field.name]] * n, field.type)
        else:
            col = pa.nulls(n, field.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def _zero_to_null(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.if_else(pc.equal(col, 0), pa.scalar(None, col.type), col)


def _strings_to_null(col: pa.ChunkedArray, values: tuple[str, ...]) -> pa.ChunkedArray:
    return pc.if_else(pc.is_in(col, pa.array(values)), pa.scalar(None, pa.string()), col)


def recv_ns(table: pa.Table) -> pa.ChunkedArray:
    """Local receive time in ns: capture_ts, else collected_at (ms); null where neither is known."""
    def scaled(col: pa.ChunkedArray, factor: int) -> pa.ChunkedArray:
        # 0 is the old writer's "missing"; values past 2262 do not fit ns in int64: both unknown
        usable = pc.and_(pc.greater(col, 0), pc.less_equal(col, (2**63 - 1) // factor))
        return pc.multiply(pc.if_else(usable, col, pa.scalar(None, pa.int64())), pa.scalar(factor, pa.int64()))

    capture = scaled(pc.cast(table.column("capture_ts"), pa.int64()), 1_000)  # timestamp[us] -> µs
    return pc.coalesce(capture, scaled(table.column("collected_at"), 1_000_000))


def ccxt_symbols(col: pa.ChunkedArray, overrides: Mapping[str, str], restored: dict[str, str]) -> pa.Array:
    """Each symbol in its ccxt form; records every value changed in `restored` (old -> new)."""
    distinct = pc.unique(col)
    mapped = []
    for v in distinct.to_pylist():
        new = None if v is None else (overrides.get(v) or restore_symbol(v))
        if new != v:
            restored[v] = new
        mapped.append(new)
    return pc.take(pa.array(mapped, pa.string()), pc.index_in(col, value_set=distinct))


def renamed_exchanges(col: pa.ChunkedArray, renamed: dict[str, str]) -> pa.ChunkedArray:
    """ccxt.pro's id for each exchange (`coinbaseadvanced` -> `coinbase`); records each change in `renamed`."""
    for old, new in EXCHANGE_RENAMES.items():
        hit = pc.equal(col, old)
        if pc.any(hit).as_py():
            renamed[old] = new
            col = pc.if_else(hit, pa.scalar(new, pa.string()), col)
    return col


def _timeframes(exchange: pa.ChunkedArray) -> pa.Array:
    distinct = pc.unique(exchange)
    frames = pa.array([None if e is None else default_ohlcv_timeframe(e) for e in distinct.to_pylist()], pa.string())
    return pc.take(frames, pc.index_in(exchange, value_set=distinct))


def _levels(col: pa.ChunkedArray) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """list<struct<price,size>> -> (price lists, size lists, rows whose levels are all usable)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    arr = pc.if_else(arr.is_null(), pa.scalar([], arr.type), arr)  # a null book side = no levels
    offsets = arr.offsets
    values = arr.values
    px = pc.struct_field(values, [0])
    sz = pc.struct_field(values, [1])
    bad_level = pc.or_(pc.or_(px.is_null(), sz.is_null()), values.is_null()).to_numpy(zero_copy_only=False)
    row_of = np.repeat(np.arange(len(arr)), np.diff(offsets.to_numpy()))
    ok = np.ones(len(arr), dtype=bool)
    ok[row_of[bad_level]] = False
    plain_px = pc.fill_null(px, 0.0)
    plain_sz = pc.fill_null(sz, 0.0)
    return (pa.ListArray.from_arrays(offsets, plain_px), pa.ListArray.from_arrays(offsets, plain_sz), ok)


def to_bronze(channel: str, old: pa.Table, overrides: Mapping[str, str], restored: dict[str, str],
              dropped: Counter, renamed: dict[str, str]) -> pa.Table:
    """The bronze rows (of channel BRONZE_CHANNEL[channel]) of `old` (a table in OLD_SCHEMAS[channel]);
    rows that cannot be bronze are left out and counted in `dropped` by reason; exchange ids
    changed to ccxt.pro's are recorded in `renamed`, symbols given back their ccxt form in `restored`."""
    if channel == "events":  # derived by the import itself, already bronze (daedalus_coinbase.SequenceWatch)
        return old.cast(bronze.EVENTS)
    n = old.num_rows
    ok = np.ones(n, dtype=bool)
    recv = recv_ns(old)
    for reason, mask in (("no receive time (capture_ts and collected_at missing)", recv.is_null()),
                         ("no exchange", old.column("exchange").is_null()),
                         ("no symbol", old.column("symbol").is_null())):
        bad = mask.to_numpy(zero_copy_only=False) & ok
        if bad.any():
            dropped[reason] += int(bad.sum())
            ok &= ~bad
    cols: dict[str, object] = {
        "exchange": renamed_exchanges(old.column("exchange"), renamed),
        "symbol": ccxt_symbols(old.column("symbol"), overrides, restored),
        "timestamp": _zero_to_null(old.column("timestamp")),
        "recv_ns": recv,
    }
    if channel == "orderbook":
        bid_px, bid_sz, ok_b = _levels(old.column("bids"))
        ask_px, ask_sz, ok_a = _levels(old.column("asks"))
        bad = ~(ok_b & ok_a) & ok
        if bad.any():
            dropped["book level without price or size"] += int(bad.sum())
            ok &= ~bad
        cols.update(kind=pc.coalesce(old.column("kind"), pa.scalar(bronze.BOOK_SNAPSHOT)),
                    nonce=_zero_to_null(old.column("nonce")),
                    prev_nonce=pa.nulls(n, pa.int64()), checksum=pa.nulls(n, pa.int64()),
                    bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz)
    elif channel == "trades":
        cols.update(trade_id=_strings_to_null(old.column("trade_id"), ("", "None")),
                    price=old.column("price"), amount=old.column("amount"),
                    side=_strings_to_null(old.column("side"), ("",)))
    elif channel == "ohlcv":
        cols.update(timeframe=pc.coalesce(old.column("timeframe"), _timeframes(cols["exchange"])),
                    **{name: old.column(name) for name in _CANDLE})
    elif channel == "bidask":
        cols.update(bid=old.column("bid"), bid_size=old.column("bid_volume"),
                    ask=old.column("ask"), ask_size=old.column("ask_volume"))
    else:
        for name in bronze.TICKER.names[4:]:
            cols[name] = old.column({v: k for k, v in _TICKER_RENAMES.items()}.get(name, name))
    schema = bronze.CHANNEL_SCHEMAS[BRONZE_CHANNEL[channel]]
    table = pa.table({name: cols[name] for name in schema.names})
    table = table.filter(pa.array(ok)) if not ok.all() else table
    return table.cast(schema)


def _differs(a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    """a is set and b is not a (relative 1e-9) match for it: a carries information b lacks."""
    a_np = a.to_numpy(zero_copy_only=False).astype(float)
    b_np = b.to_numpy(zero_copy_only=False).astype(float)
    with np.errstate(invalid="ignore"):
        same = np.abs(a_np - b_np) <= 1e-9 * np.maximum(np.abs(a_np), np.abs(b_np))
    return ~np.isnan(a_np) & ~same


def unmapped_counts(channel: str, old: pa.Table) -> Counter:
    """(channel, field) -> rows whose field holds information bronze has no place for."""
    out: Counter = Counter()
    info = old.column("info_json") if "info_json" in old.column_names else pa.nulls(old.num_rows, pa.string())
    n_info = pc.sum(pc.and_(info.is_valid(), pc.invert(pc.is_in(info, pa.array(_EMPTY_INFO))))).as_py() or 0
    if n_info:
        out[(channel, "info_json")] = n_info
    if channel == "ticker":
        checks = {"close": (old.column("close"), old.column("last")),
                  "change": (old.column("change"), pc.subtract(old.column("last"), old.column("open")))}
    elif channel == "trades":
        checks = {"cost": (old.column("cost"), pc.multiply(old.column("price"), old.column("amount")))}
    else:
        checks = {}
    for field, (value, derived) in checks.items():
        n = int(_differs(value, derived).sum())
        if n:
            out[(channel, field)] = n
    return out
