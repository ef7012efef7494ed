"""Bronze Arrow columns -> the dense numpy arrays the Cython kernels read.

Why a module: the kernels take fixed-width 2-D float64 level arrays, while
bronze stores each side as a `list<float64>` column.  The conversion here is
vectorised (list offsets + `np.repeat`), never a Python loop per row, and pads
missing levels with NaN, which the kernels treat as "no level".
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LEVEL_COLUMNS = ("bid_px", "bid_sz", "ask_px", "ask_sz")
NULL_NONCE = np.iinfo(np.int64).min  # the rebuild kernel's "no nonce"
BOOK_KINDS = ("snapshot", "delta")
_KINDS = pa.array(BOOK_KINDS)
_SIDES = pa.array(["buy", "sell"])
_SIDE_VALUES = np.array([1, -1, 0], dtype=np.int8)  # side_column's value per index_in code
_SIDE_BY_NAME = {"buy": 1, "sell": -1}
_KIND_BY_NAME = {kind: i for i, kind in enumerate(BOOK_KINDS)}
_LIST, _FLOAT64 = pa.list_(pa.float64()).id, pa.float64().id
# Up to this many rows a column of strings is mapped in Python: a compute call costs ~7 us however
# short the column, the list ~0.1 us a row (the live path converts 1-5 rows per symbol and flush).
SMALL_ROWS = 16


def _as_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 0:
            return pa.array([], type=column.type)
        if column.num_chunks == 1:
            return column.chunk(0)
        return column.combine_chunks()
    return column


def levels_matrix(column: pa.Array | pa.ChunkedArray, width: int) -> np.ndarray:
    """(rows, width) float64: the first `width` entries of each list, NaN-padded.

    Null lists become all-NaN rows and null entries become NaN.  When every list
    has at least `width` entries and no nulls, this is a zero-copy, read-only,
    row-strided view of the Arrow buffer (the kernels accept strided arrays).
    """
    arr = _as_array(column)
    n = len(arr)
    if n == 0 or width == 0:
        return np.full((n, width), np.nan, dtype=np.float64)
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(arr).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    if lengths.min() == lengths.max() and lengths[0] >= width:
        return values.reshape(n, lengths[0])[:, :width]
    out = np.full((n, width), np.nan, dtype=np.float64)
    starts = np.cumsum(lengths) - lengths
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
    pos = np.arange(len(values), dtype=np.int64) - np.repeat(starts, lengths)
    keep = pos < width
    out[rows[keep], pos[keep]] = values[keep]
    return out


def _typed(col: pa.Array | pa.ChunkedArray, dtype: pa.DataType, fill) -> pa.Array | pa.ChunkedArray:
    """`col` as `dtype` with nulls replaced by `fill`; no compute call for what is already so
    (the live path converts a few rows per symbol and flush: the calls were its cost)."""
    return _filled(col if col.type == dtype else col.cast(dtype), fill)


def _filled(col: pa.Array | pa.ChunkedArray, fill) -> pa.Array | pa.ChunkedArray:
    return pc.fill_null(col, fill) if col.null_count else col


def int64_column(table: pa.Table, name: str) -> np.ndarray:
    """An int64 column as numpy with nulls as the smallest int64 (callers drop them)."""
    return _typed(table.column(name), pa.int64(), NULL_NONCE).to_numpy()  # NULL_NONCE: the smallest int64


def nullable_int64(values: np.ndarray) -> pa.Array:
    """int64 values back as Arrow, NULL_NONCE as null (`int64_column`'s inverse)."""
    null = values == NULL_NONCE
    return pa.array(values, type=pa.int64(), mask=null if null.any() else None)


def float_column(table: pa.Table, name: str) -> np.ndarray:
    col = _typed(table.column(name), pa.float64(), float("nan"))
    return np.ascontiguousarray(col.to_numpy(), dtype=np.float64)


def side_column(table: pa.Table, name: str = "side") -> np.ndarray:
    """Taker side as int8: +1 buy, -1 sell, 0 unknown/null."""
    col = table.column(name)
    if len(col) <= SMALL_ROWS:
        return np.array([_SIDE_BY_NAME.get(v, 0) for v in col.to_pylist()], dtype=np.int8)
    codes = _filled(pc.index_in(col, value_set=_SIDES), 2)  # 0 buy, 1 sell, 2 other/null
    return _SIDE_VALUES[codes.to_numpy(zero_copy_only=False)]


def _flat_side(px: pa.Array | pa.ChunkedArray, sz: pa.Array | pa.ChunkedArray, what: str):
    """(offsets[n + 1], prices, sizes) of one side's list columns; nulls become NaN / empty."""
    px, sz = _as_array(px), _as_array(sz)
    if px.null_count == 0 and sz.null_count == 0:  # bronze books have no null list: no compute call
        (offsets, prices), (size_offsets, sizes) = _flat_valid(px), _flat_valid(sz)
        if len(offsets) == len(size_offsets) and (offsets == size_offsets).all():
            return offsets, prices, sizes
    lp = _filled(pc.list_value_length(px), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    ls = _filled(pc.list_value_length(sz), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    if not np.array_equal(lp, ls):
        row = int(np.flatnonzero(lp != ls)[0])
        raise ValueError(f"{what}: price and size lists differ in length (row {row}: {lp[row]} vs {ls[row]})")
    offsets = np.zeros(len(lp) + 1, dtype=np.int64)
    np.cumsum(lp, out=offsets[1:])

    def values(arr):
        flat = pc.list_flatten(arr) if len(arr) else pa.array([], pa.float64())
        return np.ascontiguousarray(_typed(flat, pa.float64(), float("nan")).to_numpy(zero_copy_only=False),
                                    dtype=np.float64)
    return offsets, values(px), values(sz)


def _flat_valid(arr: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets from 0, values as float64 with null values NaN) of a list array without null lists:
    what `_flat_side` computes, read from the array's own offsets and child values -- straight from
    their buffers when they are int32 offsets and float64 values without nulls (bronze's: the live
    path converts a few rows per symbol and flush, where each Arrow call costs microseconds)."""
    child = arr.values  # all of the child (a slice of the list moves the list's offset only)
    if arr.type.id == _LIST and child.type.id == _FLOAT64 and child.null_count == 0:
        _, offsets_buf, _, values_buf = arr.buffers()
        offsets = np.frombuffer(offsets_buf, np.int32, len(arr) + 1, 4 * arr.offset).astype(np.int64)
        start = int(offsets[0])
        values = np.frombuffer(values_buf, np.float64, int(offsets[-1]) - start, 8 * (child.offset + start))
        return offsets - start, values
    offsets = arr.offsets.to_numpy().astype(np.int64)
    start = int(offsets[0])
    flat = arr.values.slice(start, int(offsets[-1]) - start)
    values = _typed(flat, pa.float64(), float("nan")).to_numpy(zero_copy_only=False)
    return offsets - start, np.ascontiguousarray(values, dtype=np.float64)


def _kind_codes(col: pa.ChunkedArray) -> np.ndarray:
    """Row kinds as int8 (0 snapshot, 1 delta); an unknown or null kind is a ValueError."""
    if len(col) <= SMALL_ROWS:
        codes = [_KIND_BY_NAME.get(k) for k in col.to_pylist()]
        if None not in codes:
            return np.array(codes, dtype=np.int8)
    found = pc.index_in(col, value_set=_KINDS)  # 0 snapshot, 1 delta, null: unknown (or null)
    if found.null_count:
        bad = pc.filter(col, pc.is_null(found)).to_pylist()[:3]
        raise ValueError(f"orderbook: unknown row kind(s) {bad} (expected 'snapshot' or 'delta')")
    return found.to_numpy(zero_copy_only=False).astype(np.int8)


def book_messages(books: pa.Table) -> tuple:
    """Arguments of BookRebuild.process: kind (0 snapshot, 1 delta), nonce, prev_nonce, and
    per side (offsets, prices, sizes).  A table without `kind` (bronze format 1) is all
    snapshots; a missing `prev_nonce` is null.  An unknown kind is a ValueError."""
    n = books.num_rows
    kind = _kind_codes(books.column("kind")) if "kind" in books.column_names else np.zeros(n, dtype=np.int8)
    nonce = int64_column(books, "nonce") if "nonce" in books.column_names else np.full(n, NULL_NONCE)
    prev = int64_column(books, "prev_nonce") if "prev_nonce" in books.column_names else np.full(n, NULL_NONCE)
    bid = _flat_side(books.column("bid_px"), books.column("bid_sz"), "orderbook bids")
    ask = _flat_side(books.column("ask_px"), books.column("ask_sz"), "orderbook asks")
    return (np.ascontiguousarray(kind), np.ascontiguousarray(nonce, dtype=np.int64),
            np.ascontiguousarray(prev, dtype=np.int64), *bid, *ask)
