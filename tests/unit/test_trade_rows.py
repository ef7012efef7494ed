"""A chunk's trades per symbol as numpy (etl/trade_rows.py, features/trade_rows.py) against the
rule written out: a symbol's trades with an exchange time in a stable sort by it, the rest
counted; held trades then more as one stable sort; a checkpoint's table keeps what the kernels
read (null price/amount as NaN, side +1/-1/0) and the ids."""
from __future__ import annotations

import math
import random

import numpy as np
import pyarrow as pa
import pytest

from fluxforge.etl import trade_rows
from fluxforge.features import trade_rows as rows_module
from fluxforge.features.trade_rows import TradeRows

SYMBOLS = [("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("okx", "BTC/USDT")]
SIDES = {"buy": 1, "sell": -1}


def _raw(rng: random.Random, n: int) -> pa.Table:
    keys = [rng.choice(SYMBOLS) for _ in range(n)]
    return pa.table({
        "exchange": [k[0] for k in keys], "symbol": [k[1] for k in keys],
        "timestamp": pa.array([None if rng.random() < 0.1 else 1_700_000_000_000 + rng.randrange(0, 40)
                               for _ in range(n)], pa.int64()),
        "recv_ns": pa.array(sorted(rng.randrange(10**15, 10**15 + 10**10) for _ in range(n)), pa.int64()),
        "trade_id": pa.array([None if rng.random() < 0.1 else f"t{rng.randrange(0, 30)}" for _ in range(n)],
                             pa.string()),
        "price": pa.array([None if rng.random() < 0.05 else rng.uniform(1, 100) for _ in range(n)], pa.float64()),
        "amount": pa.array([None if rng.random() < 0.05 else rng.uniform(0, 3) for _ in range(n)], pa.float64()),
        "side": pa.array([rng.choice(["buy", "sell", None, "unknown"]) for _ in range(n)], pa.string())})


def _row(r: dict) -> tuple:
    nan = math.nan
    return (r["timestamp"], r["recv_ns"], nan if r["price"] is None else r["price"],
            nan if r["amount"] is None else r["amount"], SIDES.get(r["side"], 0), r["trade_id"])


def _as_lists(rows: TradeRows) -> list[tuple]:
    return list(zip(rows.ts.tolist(), rows.recv.tolist(), rows.price.tolist(), rows.amount.tolist(),
                    rows.side.tolist(), rows.ids.tolist()))


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x[:2] == y[:2] and x[4:] == y[4:] and np.array_equal(x[2:4], y[2:4], equal_nan=True)
                                    for x, y in zip(a, b))


@pytest.mark.parametrize("seed", range(30))
def test_by_symbol_is_the_stable_time_order_of_the_timed_trades(seed):
    rng = random.Random(seed)
    table = _raw(rng, rng.randrange(1, 60))
    want: dict = {}
    for r in table.to_pylist():
        rows, untimed = want.get((r["exchange"], r["symbol"]), ([], 0))
        want[(r["exchange"], r["symbol"])] = (rows + [_row(r)], untimed) if r["timestamp"] is not None \
            else (rows, untimed + 1)
    got = trade_rows.by_symbol(table)
    assert got.keys() == want.keys()
    for key, (rows, untimed) in want.items():
        assert got[key][1] == untimed and _same(_as_lists(got[key][0]), sorted(rows, key=lambda r: r[0])), key


@pytest.mark.parametrize("seed", range(30))
def test_held_then_more_is_one_stable_sort_and_a_checkpoint_keeps_them(seed):
    rng = random.Random(seed)
    a, b = (trade_rows.by_symbol(_raw(rng, rng.randrange(1, 30))).get(SYMBOLS[0], (rows_module.EMPTY, 0))[0]
            for _ in range(2))
    held = rng.randrange(0, len(a) + 1)
    got = _as_lists(a.slice(held).then(b))
    assert _same(got, sorted(_as_lists(a.slice(held)) + _as_lists(b), key=lambda r: r[0]))
    merged = a.then(b)
    assert (merged.to_table() is None) == (len(merged) == 0)
    assert _same(_as_lists(TradeRows.from_table(merged.to_table())), _as_lists(merged))
    mask = np.array([rng.random() < 0.5 for _ in range(len(merged))], dtype=bool)
    assert _same(_as_lists(merged.take(mask)), [r for r, k in zip(_as_lists(merged), mask) if k])


def test_a_table_without_ids_or_receive_times():
    rows = TradeRows.from_table(pa.table({"timestamp": [1, 2], "price": [1.0, 2.0], "amount": [0.5, None],
                                          "side": ["sell", "buy"]}))
    assert _same(_as_lists(rows), [(1, 0, 1.0, 0.5, -1, None), (2, 0, 2.0, math.nan, 1, None)])
    assert trade_rows.by_symbol(None) == {} and len(TradeRows.from_table(None)) == 0
