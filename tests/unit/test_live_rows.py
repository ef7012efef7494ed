"""One chunk's live rows shaped for all symbols at once equal each symbol's rows shaped alone.

etl/live_rows.py `live_products` builds the rows of every symbol of a product as one table and
gives them their exchange and symbol columns in one pass; `live_table` is the one-symbol
definition.  Checked on random bar and ticker rows, built or pending (as the feeder emits them):
several tables per symbol (out of time order, so the hive writer's sort applies), symbols of one
product with other columns (per-symbol options), products with one symbol.
"""
from __future__ import annotations

import numpy as np
import pytest

from etl_support import tables_equal
from fluxforge.etl.live_rows import live_products, live_table
from fluxforge.features import table_blocks
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
def test_live_products_equal_live_table_per_symbol(seed):
    rng = np.random.default_rng(seed)
    outputs = {}
    pending = rng.random() < 0.7  # else all built: the one-symbol path's inputs too
    for i in range(int(rng.integers(1, 12))):
        key = (str(rng.choice(["binance", "kraken"])), f"S{i}/USDT")
        for product in rng.choice(["bars/interval=5s", "ticker"], int(rng.integers(1, 3)), replace=False):
            later = bool(pending and rng.random() < 0.8)
            if product == "ticker":
                horizons = [5] if rng.random() < 0.3 else [5, 60]  # another symbol's options: other columns
                make = lambda n, h=horizons: ticker_layout.ticker_table(
                    h, _bars(rng, ticker_layout.ticker_fields(h), n), later=later)
            else:
                make = lambda n: layout.bar_table(5, _bars(rng, layout.BAR_FIELDS, n), later=later)
            outputs[(key, str(product))] = [make(int(rng.integers(1, 4))) for _ in range(int(rng.integers(1, 3)))]
    got = {}
    for product, table, sizes in live_products(outputs):
        assert table.num_rows == sum(n for _, n in sizes)
        assert [k for k, _ in sizes] == [k for k, p in outputs if p == product and k in dict(sizes)]  # chunk order
        offset = 0
        for key, n in sizes:
            assert (key, product) not in got
            got[(key, product)] = table.slice(offset, n)
            offset += n
    assert set(got) == set(outputs)
    for (key, product), tables in outputs.items():
        want = live_table(key, table_blocks.tables(tables))
        assert tables_equal(got[(key, product)], want), (key, product)
        assert got[(key, product)].column_names[:2] == ["exchange", "symbol"]
