"""A chunk's ticker rows per symbol as numpy (etl/ticker_rows.py) against the rule written out:
a symbol's rows with an exchange time, in a stable sort by it, the rest counted; merged with
held rows as one stable sort; the carry's table round trip keeps every value (null as NaN)."""
from __future__ import annotations

import math
import random

import numpy as np
import pyarrow as pa
import pytest

from fluxforge.etl import ticker_rows
from fluxforge.etl.ticker_rows import TickerRows
from fluxforge.features.ticker_layout import TICKER_INPUTS

SYMBOLS = [("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("okx", "BTC/USDT")]


def _raw(rng: random.Random, n: int) -> pa.Table:
    """Bronze-like ticker rows in receive order: repeated and out-of-order exchange times, some null,
    values null now and then (the columns the ETL reads: bronze_reader.TICKER_COLUMNS)."""
    keys = [rng.choice(SYMBOLS) for _ in range(n)]
    recv = sorted(rng.randrange(10**15, 10**15 + 10**10) for _ in range(n))
    ts = [None if rng.random() < 0.1 else 1_700_000_000_000 + rng.randrange(0, 50) for _ in range(n)]
    cols = {"exchange": [k[0] for k in keys], "symbol": [k[1] for k in keys], "timestamp": pa.array(ts, pa.int64()),
            "recv_ns": pa.array(recv, pa.int64())}
    for name in TICKER_INPUTS:
        cols[name] = pa.array([None if rng.random() < 0.05 else rng.uniform(1, 100) for _ in range(n)], pa.float64())
    return pa.table(cols)


def _want(table: pa.Table) -> dict:
    """Per symbol: rows with a time, stably sorted by it, as (ts, recv, values with NaN); untimed count."""
    out: dict = {}
    for row in table.to_pylist():
        rows, untimed = out.setdefault((row["exchange"], row["symbol"]), ([], 0))
        if row["timestamp"] is None:
            out[(row["exchange"], row["symbol"])] = (rows, untimed + 1)
            continue
        rows.append((row["timestamp"], row["recv_ns"], [math.nan if row[c] is None else row[c] for c in TICKER_INPUTS]))
    return {k: (sorted(rows, key=lambda r: r[0]), untimed) for k, (rows, untimed) in out.items()}


def _as_lists(rows: TickerRows) -> list:
    return [(int(t), int(r), list(v)) for t, r, v in zip(rows.ts, rows.recv, rows.values.tolist())]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x[:2] == y[:2] and np.array_equal(x[2], y[2], equal_nan=True) for x, y in zip(a, b))


@pytest.mark.parametrize("seed", range(30))
def test_by_symbol_is_the_stable_time_order_of_the_timed_rows(seed):
    table = _raw(random.Random(seed), random.Random(seed).randrange(1, 60))
    got, want = ticker_rows.by_symbol(table), _want(table)
    assert got.keys() == want.keys()
    for key, (rows, untimed) in want.items():
        assert got[key][1] == untimed and _same(_as_lists(got[key][0]), rows), key


@pytest.mark.parametrize("seed", range(30))
def test_held_rows_then_more_is_one_stable_sort_and_the_carry_keeps_them(seed):
    rng = random.Random(seed)
    a, b = (ticker_rows.by_symbol(_raw(rng, rng.randrange(0, 30) or 1)).get(SYMBOLS[0], (ticker_rows.EMPTY, 0))[0]
            for _ in range(2))
    held = rng.randrange(0, len(a) + 1)  # the rows before it were fed
    got = _as_lists(a.slice(held).then(b))
    assert _same(got, sorted(_as_lists(a.slice(held)) + _as_lists(b), key=lambda r: r[0]))
    merged = a.then(b)
    back = TickerRows.from_table(merged.to_table())
    assert _same(_as_lists(back), _as_lists(merged))
    assert (merged.to_table() is None) == (len(merged) == 0)


def test_no_rows():
    assert ticker_rows.by_symbol(None) == {} and ticker_rows.by_symbol(_raw(random.Random(1), 3).slice(0, 0)) == {}
    assert len(TickerRows.from_table(None)) == 0 and ticker_rows.EMPTY.to_table() is None
