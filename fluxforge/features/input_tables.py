"""The feature engine's input tables: books and trades with exactly its columns, time-sorted.

Why a module: `FeatureEngine` (engine.py) takes Arrow tables from anyone -- the demo, backfills,
tests -- and holds some of their rows back between calls (the rows at a chunk's last millisecond,
books without exchange time) and in its checkpoints, so every table must have one schema; bronze
rows become it by a select.  (The ETL gives it numpy rows: features/book_rows.py, trade_rows.py.)
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_LEVELS = pa.list_(pa.float64())
COLUMNS = {
    "books": {"timestamp": pa.int64(), "kind": pa.string(), "nonce": pa.int64(), "prev_nonce": pa.int64(),
              "bid_px": _LEVELS, "bid_sz": _LEVELS, "ask_px": _LEVELS, "ask_sz": _LEVELS},
    "trades": {"timestamp": pa.int64(), "price": pa.float64(), "amount": pa.float64(), "side": pa.string()},
}
# Bronze format 1 books lack these: every row is a snapshot, without a link to the previous one.
_OPTIONAL = {"kind": "snapshot", "prev_nonce": None}
# Declared not null as bronze declares it (a null kind is refused by book_arrays.book_messages anyway):
# the ETL's rows then need a select only; declaring it nullable rebuilt every table (4x the select).
_NOT_NULL = {"kind"}
SCHEMAS = {what: pa.schema([pa.field(n, t, nullable=n not in _NOT_NULL) for n, t in cols.items()])
           for what, cols in COLUMNS.items()}
_EMPTY = {what: schema.empty_table() for what, schema in SCHEMAS.items()}  # immutable: shared
_SEEN: dict[str, tuple[pa.Schema, bool | None]] = {}  # what -> the last input schema and its `_selectable`


def stored(table: pa.Table) -> pa.Table:
    """`table` as checkpoints store it: every field nullable, as before `kind` was declared not
    null (an earlier version reading the checkpoint after a downgrade concatenates what it holds
    with its own nullable-kind tables, which a not-null field would refuse)."""
    if all(f.nullable for f in table.schema):
        return table
    return pa.Table.from_arrays(table.columns, schema=pa.schema([f.with_nullable(True) for f in table.schema]))


def normalise(table: pa.Table | None, what: str) -> pa.Table:
    """`table` with exactly the columns of `what` (in order, cast, optional ones filled); the ETL's
    tables already have them (plus more): selected, not rebuilt."""
    schema = SCHEMAS[what]
    if table is None:
        return _EMPTY[what]
    if table.schema.equals(schema):
        return table
    columns = COLUMNS[what]
    seen = _SEEN.get(what)
    if seen is None or not table.schema.equals(seen[0]):  # the ETL's bronze rows: one shape, looked at once
        seen = _SEEN[what] = (table.schema, _selectable(table.schema, schema))
    if seen[1] is not None:
        picked = table.select(list(columns))  # bronze rows carry more columns (recv_ns, symbol...)
        return picked if seen[1] else pa.Table.from_arrays(picked.columns, schema=schema)
    missing = [c for c in columns if c not in table.column_names and c not in _OPTIONAL]
    if missing:
        raise ValueError(f"{what} table lacks column(s) {', '.join(missing)}")
    names = table.column_names
    return pa.Table.from_arrays([_as_type(table.column(name), t) if name in names
                                 else pa.array([_OPTIONAL[name]] * table.num_rows, type=t)
                                 for name, t in columns.items()], schema=schema)


def _selectable(given: pa.Schema, schema: pa.Schema) -> bool | None:
    """Whether a table of schema `given` becomes `schema` by selecting its columns (True), by
    selecting them and declaring them `schema`'s fields -- they differ in nullability only
    (False) -- or needs casts or filled columns (None)."""
    if any(given.get_field_index(f.name) < 0 for f in schema):
        return None
    fields = [given.field(f.name) for f in schema]
    if pa.schema(fields).equals(schema):
        return True
    return False if all(f.type == t.type for f, t in zip(fields, schema)) else None


def _as_type(column: pa.ChunkedArray, dtype: pa.DataType) -> pa.ChunkedArray:
    return column if column.type == dtype else column.cast(dtype)


def sorted_valid_time(table: pa.Table) -> tuple[pa.Table, np.ndarray, int]:
    """Drop rows without a timestamp; stable-sort by timestamp if needed.  Also returns the
    times (numpy), which the engine goes on cutting with instead of reading the column again,
    and how many rows were dropped."""
    ts = table.column("timestamp")
    dropped = ts.null_count
    if dropped:
        table = table.filter(pc.is_valid(ts))
    t = table.column("timestamp").to_numpy()
    if len(t) > 1 and not np.all(t[1:] >= t[:-1]):
        order = np.argsort(t, kind="stable")
        table, t = table.take(pa.array(order)), t[order]
    return table, t, dropped
