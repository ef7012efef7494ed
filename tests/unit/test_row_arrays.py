"""The compiled concatenation of row arrays (cython_ext/row_arrays.pyx) against numpy and a
row-by-row reference: `concat_pairs` gives np.concatenate's arrays byte for byte (dtype, shape,
values, NaN payloads included) for every dtype and layout, copying the numeric ones itself and
handing the rest (objects, views with strides, byte-swapped) to numpy; `concat_levels` gives one
side's levels of two row ranges as the per-row level lists say, from ranges that start anywhere;
the time lookups are numpy's searchsorted, comparisons and max on random sorted and unsorted times, and
the trades the kernels count numpy's mask on prices and amounts with NaN, infinities, zeros and signs."""
from __future__ import annotations

import random

import numpy as np
import pytest

from fluxforge._kernels.row_arrays import (all_timed, concat_levels, concat_pairs, counted_trades, is_sorted,
                                          search_left, time_max)

DTYPES = [np.int64, np.int32, np.int8, np.uint16, np.float64, np.float32, np.bool_, np.complex128]


def _array(rng: np.random.Generator, dtype, n: int, trailing: tuple = ()) -> np.ndarray:
    raw = rng.integers(0, 256, size=(n, *trailing, np.dtype(dtype).itemsize), dtype=np.uint8)
    if np.dtype(dtype) == np.bool_:
        raw = raw % 2
    return raw.view(dtype).reshape((n, *trailing))  # any bits: NaNs with payloads, negative zeros


def _same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()
    assert got.flags.c_contiguous and got.flags.writeable


@pytest.mark.parametrize("seed", range(40))
def test_pairs_are_numpys_concatenation_byte_for_byte(seed):
    rng = np.random.default_rng(seed)
    first, second = [], []
    for _ in range(int(rng.integers(1, 7))):
        dtype = DTYPES[int(rng.integers(len(DTYPES)))]
        trailing = () if rng.random() < 0.7 else (int(rng.integers(1, 4)),)
        first.append(_array(rng, dtype, int(rng.integers(0, 12)), trailing))
        second.append(_array(rng, dtype, int(rng.integers(0, 12)), trailing))
    got = concat_pairs(tuple(first), tuple(second))
    assert isinstance(got, tuple) and len(got) == len(first)
    for g, a, b in zip(got, first, second):
        _same(g, np.concatenate([a, b]))
        assert not np.shares_memory(g, a) and not np.shares_memory(g, b)


def test_what_it_does_not_copy_itself_is_numpys():
    rng = np.random.default_rng(7)
    ids = np.array(["a", None, "c"], dtype=object)
    strided = np.arange(20, dtype=np.int64)[::3]
    swapped = np.arange(5, dtype=">i8")
    mixed = (np.arange(3, dtype=np.int32), np.arange(2, dtype=np.int64))  # numpy promotes
    shapes = (np.zeros((2, 3)), np.zeros((1, 4)))
    for a, b in [(ids, ids[:1]), (strided, strided), (swapped, swapped), mixed, ([1, 2], np.arange(2))]:
        got = concat_pairs((a,), (b,))[0]
        want = np.concatenate([a, b])
        assert got.dtype == want.dtype and got.tolist() == want.tolist()
    assert concat_pairs((ids,), (ids,))[0][1] is None
    with pytest.raises(ValueError):
        concat_pairs(shapes[:1], shapes[1:])  # numpy's own error for mismatched trailing shapes
    with pytest.raises(ValueError):
        concat_pairs((rng.random(2),), ())
    scalar = np.float64(1.0)
    with pytest.raises(ValueError):
        concat_pairs((np.asarray(scalar),), (np.asarray(scalar),))  # zero-dimensional: numpy refuses


def _side(rng: random.Random, rows: int) -> tuple[list[list[float]], tuple]:
    """Per-row level lists and the same as (offsets, prices, sizes) starting at a random row of a
    larger side (as a slice of BookRows leaves them)."""
    before = rng.randrange(0, 4)
    lists = [[(rng.uniform(1, 9), rng.uniform(0, 2)) for _ in range(rng.choice([0, 0, 1, 3, 7]))]
             for _ in range(before + rows + rng.randrange(0, 3))]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    px = np.array([p for x in lists for p, _ in x], dtype=np.float64)
    sz = np.array([s for x in lists for _, s in x], dtype=np.float64)
    return lists[before:before + rows], (offsets[before:before + rows + 1], px, sz)


@pytest.mark.parametrize("seed", range(60))
def test_levels_of_two_ranges_are_each_rows_levels_in_order(seed):
    rng = random.Random(seed)
    a_lists, a = _side(rng, rng.randrange(0, 6))
    b_lists, b = _side(rng, rng.randrange(0, 6))
    offsets, px, sz = concat_levels(*a, *b)
    want = a_lists + b_lists
    assert offsets.dtype == np.int64 and px.dtype == sz.dtype == np.float64
    assert offsets.tolist()[0] == 0 and len(offsets) == len(want) + 1
    got = [list(zip(px[offsets[i]:offsets[i + 1]].tolist(), sz[offsets[i]:offsets[i + 1]].tolist()))
           for i in range(len(want))]
    assert got == want
    assert len(px) == len(sz) == offsets[-1]


def test_levels_refuse_what_is_not_a_side():
    off, px = np.array([0, 2], dtype=np.int64), np.array([1.0, 2.0])
    ok = (off, px, px)
    for bad in [(off.astype(np.int32), px, px), (off, px.astype(np.float32), px), (off, px[::-1], px),
                (np.zeros(0, np.int64), px, px), (np.array([0, 3], dtype=np.int64), px, px),
                (np.array([1, 0], dtype=np.int64), px, px), (np.array([-1, 1], dtype=np.int64), px, px),
                ([0, 2], px, px)]:
        with pytest.raises(ValueError):
            concat_levels(*bad, *ok)
        with pytest.raises(ValueError):
            concat_levels(*ok, *bad)


NULL = np.iinfo(np.int64).min


@pytest.mark.parametrize("seed", range(60))
def test_time_lookups_are_numpys(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 40))
    ts = np.sort(rng.integers(-5, 30, size=n)).astype(np.int64)
    if rng.random() < 0.3 and n:
        ts[: int(rng.integers(1, n + 1))] = NULL  # nulls sort first
    for value in [*rng.integers(-8, 34, size=6).tolist(), NULL, np.iinfo(np.int64).max, np.int64(3)]:
        assert search_left(ts, value) == int(np.searchsorted(ts, value, side="left"))
        assert search_left(ts[1:], value) == int(np.searchsorted(ts[1:], value, side="left"))
    shuffled = rng.permutation(ts)
    for t in (ts, shuffled, shuffled[::2], *([ts.tolist()] if n else [])):  # ([] is float64 to numpy)
        t_np = np.asarray(t, dtype=np.int64)
        assert all_timed(t) == bool((t_np != NULL).all())
        assert is_sorted(t) == bool((t_np[1:] >= t_np[:-1]).all())
        if len(t_np):
            assert time_max(t) == int(t_np.max())
    with pytest.raises(ValueError):
        time_max(ts[:0])


@pytest.mark.parametrize("seed", range(30))
def test_counted_trades_are_numpys_mask(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 50))
    pool = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.5, 1e-300, 5e-324, 2.5, 1e300])
    px = np.where(rng.random(n) < 0.4, rng.choice(pool, n), rng.uniform(-1, 10, n))
    amt = np.where(rng.random(n) < 0.4, rng.choice(pool, n), rng.uniform(-1, 10, n))
    for p, a in [(px, amt), (px[::2], amt[::2]), (px.tolist(), amt.tolist())]:
        p_np, a_np = np.asarray(p, dtype=np.float64), np.asarray(a, dtype=np.float64)
        got = counted_trades(p, a)
        assert got.dtype == np.bool_
        assert got.tolist() == (np.isfinite(p_np) & np.isfinite(a_np) & (p_np > 0) & (a_np > 0)).tolist()
    with pytest.raises(ValueError):
        counted_trades(px, amt[:-1] if n else np.zeros(1))
    with pytest.raises(ValueError):
        counted_trades(np.ones(n, np.float32), amt)


def test_time_lookups_refuse_what_is_not_times():
    for bad in [np.zeros(3, np.float64), np.zeros((2, 2), np.int64), ["a"]]:
        for f in (all_timed, is_sorted, lambda t: search_left(t, 0)):
            with pytest.raises(ValueError):
                f(bad)
