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


def int64_column(table: pa.Table, name: str) -> np.ndarray:
    """An int64 column as numpy with nulls as the smallest int64 (callers drop them)."""
    col = table.column(name)
    return pc.fill_null(col.cast(pa.int64()), np.iinfo(np.int64).min).to_numpy()


def float_column(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name).cast(pa.float64())
    return np.ascontiguousarray(pc.fill_null(col, float("nan")).to_numpy(), dtype=np.float64)


def side_column(table: pa.Table, name: str = "side") -> np.ndarray:
    """Taker side as int8: +1 buy, -1 sell, 0 unknown/null."""
    col = table.column(name)
    buy = pc.fill_null(pc.equal(col, "buy"), False).to_numpy(zero_copy_only=False)
    sell = pc.fill_null(pc.equal(col, "sell"), False).to_numpy(zero_copy_only=False)
    return (buy.astype(np.int8) - sell.astype(np.int8)).astype(np.int8)
