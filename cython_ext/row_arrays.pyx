# cython: language_level=3
"""The ETL's per-symbol row arrays: merging held rows with a flush's, and finding a time in them.

Why compiled: the live ETL merges each symbol's new rows into the rows it holds back at the
watermark and cuts them at times, per symbol and collector flush (features/time_rows.py,
book_rows.py, features/engine.py, etl/engines.py): a handful of rows each, so what it costs is
numpy's per call -- about a microsecond per `np.concatenate` (a dozen of them for a book's rows
and levels), two or three per `np.searchsorted` of a scalar.  Here one call does each.

`concat_pairs` is `np.concatenate` along the first axis, byte for byte: C-contiguous arrays of
the same dtype and trailing shape are copied with memcpy; anything else -- object arrays (trade
ids: their references must be counted), other layouts or mismatched dtypes -- goes to numpy.
`search_left` / `all_timed` / `is_sorted` read int64 times (exchange ms, NULL the smallest int64).
"""
import numpy as np

cimport numpy as cnp
from libc.math cimport isfinite
from libc.stdint cimport int64_t
from libc.string cimport memcpy

cnp.import_array()


def concat_pairs(tuple first, tuple second):
    """`tuple(np.concatenate([a, b]) for a, b in zip(first, second))`."""
    cdef Py_ssize_t i, n = len(first)
    if len(second) != n:
        raise ValueError(f"{n} arrays to concatenate with {len(second)}")
    return tuple([_concat(first[i], second[i]) for i in range(n)])


cdef object _concat(object a, object b):
    if not (isinstance(a, cnp.ndarray) and isinstance(b, cnp.ndarray)):
        return np.concatenate([a, b])
    cdef cnp.ndarray x = <cnp.ndarray>a
    cdef cnp.ndarray y = <cnp.ndarray>b
    cdef int nd = cnp.PyArray_NDIM(x), d
    cdef int kind = cnp.PyArray_TYPE(x)
    if (nd < 1 or nd > 8 or cnp.PyArray_NDIM(y) != nd or cnp.PyArray_TYPE(y) != kind
            or not (cnp.PyArray_ISNUMBER(x) or cnp.PyArray_ISBOOL(x))  # no objects, strings, records
            or not (cnp.PyArray_ISNOTSWAPPED(x) and cnp.PyArray_ISNOTSWAPPED(y))
            or not (cnp.PyArray_IS_C_CONTIGUOUS(x) and cnp.PyArray_IS_C_CONTIGUOUS(y))):
        return np.concatenate([x, y])
    cdef cnp.npy_intp dims[8]
    for d in range(1, nd):
        if cnp.PyArray_DIM(x, d) != cnp.PyArray_DIM(y, d):
            return np.concatenate([x, y])
        dims[d] = cnp.PyArray_DIM(x, d)
    dims[0] = cnp.PyArray_DIM(x, 0) + cnp.PyArray_DIM(y, 0)
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(nd, dims, kind, 0)
    cdef size_t nx = cnp.PyArray_NBYTES(x), ny = cnp.PyArray_NBYTES(y)
    cdef char *dst = <char *>cnp.PyArray_DATA(out)
    if nx:
        memcpy(dst, cnp.PyArray_DATA(x), nx)
    if ny:
        memcpy(dst + nx, cnp.PyArray_DATA(y), ny)
    return out


cdef char *_flat(object a, int kind, str name) except NULL:
    """The data of a 1-D C-contiguous native array of type `kind` (a ValueError otherwise)."""
    if not isinstance(a, cnp.ndarray):
        raise ValueError(f"{name}: not an array")
    cdef cnp.ndarray x = <cnp.ndarray>a
    if (cnp.PyArray_NDIM(x) != 1 or cnp.PyArray_TYPE(x) != kind or not cnp.PyArray_ISNOTSWAPPED(x)
            or not cnp.PyArray_IS_C_CONTIGUOUS(x)):
        raise ValueError(f"{name}: not a contiguous 1-D native {'int64' if kind == cnp.NPY_INT64 else 'float64'} array")
    return <char *>cnp.PyArray_DATA(x)


def concat_levels(a_offsets, a_px, a_sz, b_offsets, b_px, b_sz):
    """One side's levels of two row ranges, as features/book_rows.py holds them -- per-row offsets
    (int64, n + 1, from any start) into flat float64 price and size arrays -- as one range with
    offsets from 0: (offsets, prices, sizes).  `a`'s rows first."""
    cdef const int64_t *ao = <const int64_t *>_flat(a_offsets, cnp.NPY_INT64, "offsets")
    cdef const int64_t *bo = <const int64_t *>_flat(b_offsets, cnp.NPY_INT64, "offsets")
    cdef const double *apx = <const double *>_flat(a_px, cnp.NPY_FLOAT64, "prices")
    cdef const double *asz = <const double *>_flat(a_sz, cnp.NPY_FLOAT64, "sizes")
    cdef const double *bpx = <const double *>_flat(b_px, cnp.NPY_FLOAT64, "prices")
    cdef const double *bsz = <const double *>_flat(b_sz, cnp.NPY_FLOAT64, "sizes")
    cdef cnp.npy_intp na = cnp.PyArray_DIM(a_offsets, 0) - 1, nb = cnp.PyArray_DIM(b_offsets, 0) - 1, i
    if na < 0 or nb < 0:
        raise ValueError("offsets need at least one entry")
    cdef int64_t a0 = ao[0], a1 = ao[na], b0 = bo[0], b1 = bo[nb]
    cdef cnp.npy_intp la = a1 - a0, lb = b1 - b0
    if (a0 < 0 or b0 < 0 or la < 0 or lb < 0 or a1 > min(cnp.PyArray_DIM(a_px, 0), cnp.PyArray_DIM(a_sz, 0))
            or b1 > min(cnp.PyArray_DIM(b_px, 0), cnp.PyArray_DIM(b_sz, 0))):
        raise ValueError("offsets outside their levels")
    cdef cnp.npy_intp n_off = na + nb + 1, n_lev = la + lb
    cdef cnp.ndarray offsets = cnp.PyArray_EMPTY(1, &n_off, cnp.NPY_INT64, 0)
    cdef cnp.ndarray px = cnp.PyArray_EMPTY(1, &n_lev, cnp.NPY_FLOAT64, 0)
    cdef cnp.ndarray sz = cnp.PyArray_EMPTY(1, &n_lev, cnp.NPY_FLOAT64, 0)
    cdef int64_t *o = <int64_t *>cnp.PyArray_DATA(offsets)
    cdef double *p = <double *>cnp.PyArray_DATA(px)
    cdef double *s = <double *>cnp.PyArray_DATA(sz)
    for i in range(na + 1):
        o[i] = ao[i] - a0
    for i in range(1, nb + 1):
        o[na + i] = bo[i] - b0 + la
    if la:
        memcpy(p, apx + a0, la * sizeof(double))
        memcpy(s, asz + a0, la * sizeof(double))
    if lb:
        memcpy(p + la, bpx + b0, lb * sizeof(double))
        memcpy(s + la, bsz + b0, lb * sizeof(double))
    return offsets, px, sz


cdef const int64_t *_times(object ts, cnp.npy_intp *n) except NULL:
    """The data of an int64 time array (1-D; a contiguous copy made by the caller otherwise)."""
    cdef const int64_t *data = <const int64_t *>_flat(ts, cnp.NPY_INT64, "times")
    n[0] = cnp.PyArray_DIM(ts, 0)
    return data


def search_left(ts, int64_t value):
    """`int(np.searchsorted(ts, value, side="left"))` for sorted int64 `ts`: the first position
    whose time is not before `value` (len(ts) if none)."""
    cdef cnp.npy_intp n
    cdef const int64_t *t = _times(_contiguous(ts), &n)
    cdef cnp.npy_intp lo = 0, hi = n, mid
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if t[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def all_timed(ts):
    """`bool((ts != NULL).all())`: no row without a time (NULL: the smallest int64)."""
    cdef cnp.npy_intp n, i
    cdef const int64_t *t = _times(_contiguous(ts), &n)
    cdef int64_t null = -9223372036854775807 - 1
    for i in range(n):
        if t[i] == null:
            return False
    return True


def is_sorted(ts):
    """`bool((ts[1:] >= ts[:-1]).all())`: the times never go back."""
    cdef cnp.npy_intp n, i
    cdef const int64_t *t = _times(_contiguous(ts), &n)
    for i in range(1, n):
        if t[i] < t[i - 1]:
            return False
    return True


cdef object _contiguous(object ts):
    return _native(ts, cnp.NPY_INT64, "times")


cdef object _native(object a, int kind, str name):
    """`a` itself if a contiguous 1-D native array of type `kind` (the ETL's), else a contiguous
    copy of one; a ValueError if `a` holds another type."""
    if isinstance(a, cnp.ndarray) and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a) \
            and cnp.PyArray_TYPE(<cnp.ndarray>a) == kind and cnp.PyArray_NDIM(<cnp.ndarray>a) == 1 \
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a):
        return a
    x = np.asarray(a)
    want = np.int64 if kind == cnp.NPY_INT64 else np.float64
    if x.dtype != want or x.ndim != 1:
        raise ValueError(f"{name}: a 1-D {np.dtype(want)} array, not {x.ndim}-D {x.dtype}")
    return np.ascontiguousarray(x, dtype=want)


def time_max(ts):
    """`int(ts.max())` of int64 times (a ValueError if there are none, as numpy's)."""
    cdef cnp.npy_intp n, i
    cdef const int64_t *t = _times(_contiguous(ts), &n)
    if n == 0:
        raise ValueError("the largest of no times")
    cdef int64_t m = t[0]
    for i in range(1, n):
        if t[i] > m:
            m = t[i]
    return m


def counted_trades(prices, amounts):
    """`np.isfinite(prices) & np.isfinite(amounts) & (prices > 0) & (amounts > 0)` of float64 arrays:
    the trades the trade kernels count (cython_ext/trade_bars.pyx)."""
    prices, amounts = _native(prices, cnp.NPY_FLOAT64, "prices"), _native(amounts, cnp.NPY_FLOAT64, "amounts")
    cdef const double *p = <const double *>_flat(prices, cnp.NPY_FLOAT64, "prices")
    cdef const double *a = <const double *>_flat(amounts, cnp.NPY_FLOAT64, "amounts")
    cdef cnp.npy_intp n = cnp.PyArray_DIM(prices, 0), i
    if cnp.PyArray_DIM(amounts, 0) != n:
        raise ValueError("prices and amounts of different lengths")
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(1, &n, cnp.NPY_BOOL, 0)
    cdef char *o = <char *>cnp.PyArray_DATA(out)
    for i in range(n):
        o[i] = isfinite(p[i]) and isfinite(a[i]) and p[i] > 0 and a[i] > 0
    return out
