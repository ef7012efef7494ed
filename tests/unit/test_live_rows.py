"""One chunk's live rows shaped for all symbols at once equal each symbol's rows shaped alone.

etl/live_rows.py `live_tables` gives the rows of every symbol of a product their exchange and
symbol columns in one pass and slices them back; `live_table` is the one-symbol definition.
Checked on random bar and ticker rows: several tables per symbol (out of time order, so the
hive writer's sort applies), symbols of one product with other columns (per-symbol options),
products with one symbol.
"""
from __future__ import annotations

import numpy as np
import pytest

from etl_support import tables_equal
from fluxforge.etl.live_rows import live_table, live_tables
from fluxforge.features import layout, ticker_layout


def _bars(rng, fields, rows):
    block = rng.normal(size=(rows, len(fields)))
    block[rng.random(block.shape) < 0.05] = np.nan
    block[:, fields.index("timestamp")] = 1_733_000_000_000 + rng.integers(0, 10**6, rows)
    for name in layout.BAR_INT:
        if name in fields:
            block[:, fields.index(name)] = rng.integers(0, 9, rows)
    if "is_empty" in fields:
        block[:, fields.index("is_empty")] = rng.integers(0, 2, rows)
    return block


@pytest.mark.parametrize("seed", range(10))
def test_live_tables_equal_live_table_per_symbol(seed):
    rng = np.random.default_rng(seed)
    outputs = {}
    for i in range(int(rng.integers(1, 12))):
        key = (str(rng.choice(["binance", "kraken"])), f"S{i}/USDT")
        for product in rng.choice(["bars/interval=5s", "ticker"], int(rng.integers(1, 3)), replace=False):
            if product == "ticker":
                horizons = [5] if rng.random() < 0.3 else [5, 60]  # another symbol's options: other columns
                make = lambda n, h=horizons: ticker_layout.ticker_table(h, _bars(rng, ticker_layout.ticker_fields(h), n))
            else:
                make = lambda n: layout.bar_table(5, _bars(rng, layout.BAR_FIELDS, n))
            outputs[(key, str(product))] = [make(int(rng.integers(1, 4))) for _ in range(int(rng.integers(1, 3)))]
    got = live_tables(outputs)
    assert list(got) == list(outputs)  # the chunk's order
    for (key, product), tables in outputs.items():
        want = live_table(key, tables)
        assert tables_equal(got[(key, product)], want), (key, product)
        assert got[(key, product)].column_names[:2] == ["exchange", "symbol"]
