"""Arrow book and trade columns -> the kernels' flat NumPy arguments, against Python lists.

features/book_arrays.py reads bronze list columns through their offsets and child values
when no list is null (the usual case, and the live path's per-chunk cost) and through
compute calls otherwise.  The reference here is written from the definition (per row:
the list's values, null entries NaN, a null list empty) and compared on random tables:
sliced, in several chunks, with and without null lists and null values.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from fluxforge.features.book_arrays import NULL_NONCE, book_messages, side_column


def _lists(rng, lengths, null_lists, null_values):
    out = []
    for n in lengths:
        if null_lists and rng.random() < 0.2:
            out.append(None)
            continue
        out.append([None if null_values and rng.random() < 0.1 else float(v) for v in rng.normal(100, 5, n)])
    return out


def _books(rng, rows, null_lists, null_values):
    lengths = rng.integers(0, 6, rows)
    sides = {}
    for side in ("bid", "ask"):
        px = _lists(rng, lengths, null_lists, null_values)
        sz = [None if p is None else [abs(v) if v is not None else None for v in _lists(rng, [len(p)], False, null_values)[0]]
              for p in px]
        sides[f"{side}_px"], sides[f"{side}_sz"] = px, sz
    return {"timestamp": list(range(rows)), "kind": [str(k) for k in rng.choice(["snapshot", "delta"], rows)],
            "nonce": [None if rng.random() < 0.1 else int(v) for v in rng.integers(0, 10**9, rows)],
            "prev_nonce": [None if rng.random() < 0.3 else int(v) for v in rng.integers(0, 10**9, rows)], **sides}


def _table(cols: dict, chunks: int) -> pa.Table:
    types = {"timestamp": pa.int64(), "kind": pa.string(), "nonce": pa.int64(), "prev_nonce": pa.int64()}
    fields = [pa.field(c, types.get(c, pa.list_(pa.float64()))) for c in cols]
    n = len(cols["timestamp"])
    cuts = sorted({0, n, *np.random.default_rng(n).integers(0, n + 1, chunks - 1).tolist()})
    batches = [pa.RecordBatch.from_pydict({c: v[a:b] for c, v in cols.items()}, schema=pa.schema(fields))
               for a, b in zip(cuts, cuts[1:])]
    return pa.Table.from_batches(batches, pa.schema(fields))


def _reference_side(px, sz):
    offsets, prices, sizes = [0], [], []
    for p, s in zip(px, sz):
        p, s = p or [], s or []
        prices += [np.nan if v is None else v for v in p]
        sizes += [np.nan if v is None else v for v in s]
        offsets.append(offsets[-1] + len(p))
    return np.array(offsets, np.int64), np.array(prices, np.float64), np.array(sizes, np.float64)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("null_lists", [False, True])
def test_book_messages_match_the_lists(seed, null_lists):
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(0, 40))
    cols = _books(rng, rows + 7, null_lists, null_values=bool(seed % 2))
    table = _table(cols, chunks=int(rng.integers(1, 4))).slice(3, rows)  # a slice: offsets not from 0
    want = {c: v[3:3 + rows] for c, v in cols.items()}
    kind, nonce, prev, *sides = book_messages(table)
    assert kind.tolist() == [1 if k == "delta" else 0 for k in want["kind"]]
    assert nonce.tolist() == [NULL_NONCE if v is None else v for v in want["nonce"]]
    assert prev.tolist() == [NULL_NONCE if v is None else v for v in want["prev_nonce"]]
    for got, ref in zip(sides, (*_reference_side(want["bid_px"], want["bid_sz"]),
                                *_reference_side(want["ask_px"], want["ask_sz"]))):
        assert np.array_equal(got, ref, equal_nan=True)


def test_bad_kinds_and_uneven_lists_are_refused():
    rng = np.random.default_rng(0)
    cols = _books(rng, 5, False, False)
    cols["kind"][2] = "update"
    with pytest.raises(ValueError, match="unknown row kind"):
        book_messages(_table(cols, 1))
    cols["kind"][2] = None
    with pytest.raises(ValueError, match="unknown row kind"):
        book_messages(_table(cols, 1))
    cols = _books(rng, 5, False, False)
    cols["ask_sz"][3] = cols["ask_sz"][3] + [1.0]
    with pytest.raises(ValueError, match="orderbook asks: price and size lists differ in length .row 3"):
        book_messages(_table(cols, 1))


def test_side_column():
    sides = ["buy", "sell", None, "unknown", "sell", "buy"]
    t = pa.Table.from_batches([pa.RecordBatch.from_pydict({"side": sides[:2]}),
                               pa.RecordBatch.from_pydict({"side": sides[2:]})])
    got = side_column(t)
    assert got.dtype == np.int8 and got.tolist() == [1, -1, 0, 0, -1, 1]
    assert side_column(t.slice(0, 0)).tolist() == []
