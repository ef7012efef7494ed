"""A chunk's books per symbol as numpy (etl/book_rows.py, features/book_rows.py) against the rule
written out row by row in Python: per symbol, a row without exchange time takes the time of the
symbol's next timed row in receive order (else the previous one, else it stays untimed and sorts
at its receive time), then a stable sort by time; held rows then more as one stable sort; slices,
takes and a checkpoint's table keep each row's own levels; format 1 rows are snapshots."""
from __future__ import annotations

import math
import random

import numpy as np
import pyarrow as pa
import pytest

from fluxforge.etl import book_rows
from fluxforge.etl.bronze_reader import book_batch
from fluxforge.features import book_rows as rows_module
from fluxforge.features.book_arrays import nullable_int64
from fluxforge.features.book_rows import NULL, BookRows

SYMBOLS = [("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("okx", "BTC/USDT")]
KINDS = {"snapshot": 0, "delta": 1}
T0 = 1_700_000_000_000


def _levels(rng: random.Random) -> tuple[list, list]:
    n = rng.choice([0, 1, 2, 5])
    return [rng.uniform(1, 100) for _ in range(n)], [rng.uniform(0, 3) for _ in range(n)]


def _raw(rng: random.Random, n: int, untimed: float = 0.15) -> pa.Table:
    keys = [rng.choice(SYMBOLS) for _ in range(n)]
    bids, asks = [_levels(rng) for _ in range(n)], [_levels(rng) for _ in range(n)]
    lists = pa.list_(pa.float64())
    return pa.table({
        "exchange": [k[0] for k in keys], "symbol": [k[1] for k in keys],
        "timestamp": pa.array([None if rng.random() < untimed else T0 + rng.randrange(0, 40) for _ in range(n)],
                              pa.int64()),
        "recv_ns": pa.array(sorted(rng.randrange(10**15, 10**15 + 10**10) for _ in range(n)), pa.int64()),
        "kind": pa.array([rng.choice(list(KINDS)) for _ in range(n)], pa.string()),
        "nonce": pa.array([None if rng.random() < 0.1 else rng.randrange(1, 10**6) for _ in range(n)], pa.int64()),
        "prev_nonce": pa.array([None if rng.random() < 0.3 else rng.randrange(1, 10**6) for _ in range(n)],
                               pa.int64()),
        "bid_px": pa.array([b[0] for b in bids], lists), "bid_sz": pa.array([b[1] for b in bids], lists),
        "ask_px": pa.array([a[0] for a in asks], lists), "ask_sz": pa.array([a[1] for a in asks], lists)})


def _row(r: dict, ts) -> tuple:
    none = NULL
    return (none if ts is None else ts, r["recv_ns"], KINDS[r.get("kind", "snapshot")],
            none if r["nonce"] is None else r["nonce"], none if r.get("prev_nonce") is None else r["prev_nonce"],
            r["bid_px"], r["bid_sz"], r["ask_px"], r["ask_sz"])


def _as_lists(rows: BookRows) -> list[tuple]:
    out = []
    for i in range(len(rows)):
        side = [[values[offsets[i]:offsets[i + 1]].tolist() for values in (px, sz)]
                for offsets, px, sz in (rows.bid, rows.ask)]
        out.append((int(rows.ts[i]), int(rows.recv[i]), int(rows.kind[i]), int(rows.nonce[i]), int(rows.prev[i]),
                    *side[0], *side[1]))
    return out


def _reference(table: pa.Table) -> dict:
    """Per symbol: times filled from the next (else previous) timed row in receive order, then a
    stable sort by time, an untimed row at its receive time in ms."""
    by_key: dict = {}
    for r in table.to_pylist():
        by_key.setdefault((r["exchange"], r["symbol"]), []).append(r)
    want = {}
    for key, rs in by_key.items():  # rs: file order
        by_recv = sorted(range(len(rs)), key=lambda i: rs[i]["recv_ns"])  # stable: file order among ties
        times = [rs[i]["timestamp"] for i in by_recv]
        filled = {}
        for j, i in enumerate(by_recv):
            later = [u for u in times[j:] if u is not None]
            earlier = [u for u in times[:j] if u is not None]
            filled[i] = later[0] if later else earlier[-1] if earlier else None
        order = sorted(range(len(rs)), key=lambda i: filled[i] if filled[i] is not None
                       else rs[i]["recv_ns"] // 1_000_000)
        want[key] = [_row(rs[i], filled[i]) for i in order]
    return want


@pytest.mark.parametrize("seed", range(30))
def test_by_symbol_fills_times_and_sorts_each_symbol_stably(seed):
    rng = random.Random(seed)
    table = _raw(rng, rng.randrange(1, 60), untimed=rng.choice([0.0, 0.15, 0.9]))
    got = book_rows.by_symbol(table)
    want = _reference(table)
    assert got.keys() == want.keys()
    for key, rows in want.items():
        assert _as_lists(got[key]) == rows, key
    for key, arrow in book_batch(table).items():  # the reader's Arrow tables: the same rows
        assert _as_lists(BookRows.from_table(arrow)) == want[key], key


@pytest.mark.parametrize("seed", range(30))
def test_held_then_more_is_one_stable_sort_and_a_checkpoint_keeps_them(seed):
    rng = random.Random(seed)
    a, b = (book_rows.by_symbol(_raw(rng, rng.randrange(1, 30), untimed=0.0)).get(SYMBOLS[0], rows_module.EMPTY)
            for _ in range(2))
    held = rng.randrange(0, len(a) + 1)
    got = _as_lists(a.slice(held).then(b))
    assert got == sorted(_as_lists(a.slice(held)) + _as_lists(b), key=lambda r: r[0])
    assert _as_lists(a.slice(held).concat(b)) == _as_lists(a)[held:] + _as_lists(b)
    merged = a.then(b)
    assert (merged.to_table() is None) == (len(merged) == 0)
    assert _as_lists(BookRows.from_table(merged.to_table())) == _as_lists(merged)
    mask = np.array([rng.random() < 0.5 for _ in range(len(merged))], dtype=bool)
    assert _as_lists(merged.take(mask)) == [r for r, k in zip(_as_lists(merged), mask) if k]
    idx = np.array(sorted(rng.randrange(0, len(merged)) for _ in range(len(merged))), dtype=np.int64)
    levels = merged.levels(idx)
    assert [levels[c].to_pylist() for c in ("bid_px", "bid_sz", "ask_px", "ask_sz")] \
        == [[_as_lists(merged)[i][5 + j] for i in idx] for j in range(4)]
    nonces = nullable_int64(merged.nonce[idx]).to_pylist()
    assert nonces == [None if _as_lists(merged)[i][3] == NULL else _as_lists(merged)[i][3] for i in idx]


def test_format_1_rows_are_snapshots_without_a_previous_nonce():
    table = _raw(random.Random(1), 20).drop_columns(["kind", "prev_nonce"])
    rows = BookRows.from_table(table)
    assert (rows.kind == 0).all() and (rows.prev == NULL).all()
    back = rows.to_table()
    assert back.column("kind").to_pylist() == ["snapshot"] * 20 and back.column("prev_nonce").null_count == 20


def test_null_levels_read_as_the_rebuild_reads_them():
    """A null list is an empty side, a null level NaN; an unknown kind is refused with its name."""
    lists = pa.list_(pa.float64())
    table = pa.table({"timestamp": pa.array([T0, T0 + 1], pa.int64()), "kind": ["snapshot", "delta"],
                      "nonce": pa.array([1, 2], pa.int64()),
                      "bid_px": pa.array([None, [1.0, None]], lists), "bid_sz": pa.array([None, [2.0, 3.0]], lists),
                      "ask_px": pa.array([[4.0], []], lists), "ask_sz": pa.array([[5.0], []], lists)})
    got = _as_lists(BookRows.from_table(table))
    assert got[0][5:] == ([], [], [4.0], [5.0])
    assert got[1][5][0] == 1.0 and math.isnan(got[1][5][1]) and got[1][6] == [2.0, 3.0]
    with pytest.raises(ValueError, match="unknown row kind.*'bogus'"):
        BookRows.from_table(table.set_column(1, "kind", pa.array(["snapshot", "bogus"])))
