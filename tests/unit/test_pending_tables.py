"""Tables built once per chunk for every symbol equal the tables built one by one.

features/pending_tables.py builds the pending tables of one builder from their
concatenated inputs and hands out slices; this checks, on random kernel blocks (NaN,
infinities, empty-bar flags, integer fields), that every slice has the schema and values
of the table its builder makes alone, whatever the mix of builders and row counts.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from etl_support import tables_equal
from fluxforge.config import FeatureOptions
from fluxforge.features import layout, ticker_layout, trade_layout
from fluxforge.features.book_arrays import NULL_NONCE
from fluxforge.features.pending_tables import PendingTable, build_all


def _block(rng: np.random.Generator, rows: int, fields: int) -> np.ndarray:
    block = rng.normal(size=(rows, fields)) * 1e3
    block[rng.random(block.shape) < 0.05] = np.nan
    block[rng.random(block.shape) < 0.01] = np.inf
    return block


def _bars(rng, fields, rows):
    """A kernel bar block: times, start/end times and counts as the kernels write them."""
    block = _block(rng, rows, len(fields))
    for name in ("timestamp", "start_ts", "end_ts"):
        if name in fields:
            block[:, fields.index(name)] = 1_733_000_000_000 + rng.integers(0, 10**9, rows)
    for name in trade_layout.TRADE_BAR_INT | layout.BAR_INT:
        if name in fields:
            block[:, fields.index(name)] = rng.integers(0, 50, rows)
    if "is_empty" in fields:
        block[:, fields.index("is_empty")] = rng.integers(0, 2, rows)
    return block


def _pending(rng: np.random.Generator, hf: layout.HfBuilder):
    """(pending table, the same table built directly) of a random builder and row count."""
    rows = int(rng.integers(1, 5))
    kind = rng.integers(0, 5)
    if kind == 0:
        ts = 1_733_000_000_000 + np.sort(rng.integers(0, 10**9, rows))
        nonce = rng.integers(0, 10**12, rows)
        if rng.integers(0, 2):  # the engine's: numpy, NULL_NONCE where a book had none
            nonce[rng.random(rows) < 0.3] = NULL_NONCE
        else:
            nonce = pa.array(nonce, pa.int64())
        block = _block(rng, rows, len(hf.kernel)).T.copy()  # (columns x rows)
        counted = np.array(hf.kinds) != 0  # int and bool columns: whole numbers, as the kernel writes them
        block[counted] = rng.integers(0, 3, (int(counted.sum()), rows))
        alone = hf.table(ts, nonce, block)
        want = nonce.to_pylist() if isinstance(nonce, pa.Array) \
            else [None if v == NULL_NONCE else v for v in nonce.tolist()]
        assert alone.column("nonce").to_pylist() == want
        return hf.table(ts, nonce, block, later=True), alone
    if kind == 1:
        d, block = int(rng.choice([1, 5, 60])), _bars(rng, layout.BAR_FIELDS, rows)
        return layout.bar_table(d, block, later=True), layout.bar_table(d, block)
    if kind == 2:
        d, block = int(rng.choice([1, 30])), _bars(rng, trade_layout.TRADE_BAR_FIELDS, rows)
        return trade_layout.trade_bar_table(d, block, later=True), trade_layout.trade_bar_table(d, block)
    if kind == 3:
        block = _bars(rng, trade_layout.INFO_BAR_FIELDS, rows)
        return trade_layout.info_bar_table(block, later=True), trade_layout.info_bar_table(block)
    horizons = [[5, 60], [10]][int(rng.integers(0, 2))]
    block = _bars(rng, ticker_layout.ticker_fields(horizons), rows)
    return ticker_layout.ticker_table(horizons, block, later=True), ticker_layout.ticker_table(horizons, block)


@pytest.mark.parametrize("seed", range(20))
def test_a_chunks_tables_built_together_equal_each_built_alone(seed):
    rng = np.random.default_rng(seed)
    hf = layout.HfBuilder(FeatureOptions())
    pairs = [_pending(rng, hf) for _ in range(int(rng.integers(1, 40)))]
    assert all(isinstance(p, PendingTable) for p, _ in pairs)
    for table, (p, alone) in zip(build_all([p for p, _ in pairs]), pairs):
        assert table.schema == alone.schema
        assert table.num_rows == p.num_rows
        assert tables_equal(table, alone), "a slice of the shared build differs from the table built alone"
        assert tables_equal(build_all([p])[0], alone)


def test_builders_with_other_names_are_not_merged():
    """Ticker rows of other horizons have other columns: each builder key gets its own table."""
    rng = np.random.default_rng(1)
    a = ticker_layout.ticker_table([5], _bars(rng, ticker_layout.ticker_fields([5]), 2), later=True)
    b = ticker_layout.ticker_table([5, 60], _bars(rng, ticker_layout.ticker_fields([5, 60]), 3), later=True)
    ta, tb = build_all([a, b])
    assert ta.column_names == ticker_layout.ticker_fields([5]) and ta.num_rows == 2
    assert tb.column_names == ticker_layout.ticker_fields([5, 60]) and tb.num_rows == 3


def test_empty_and_raw_tables_are_built_at_once():
    """No rows (most calls of the live path close no bar) or raw arrays: a table, never pending."""
    assert isinstance(layout.bar_table(5, np.empty((0, len(layout.BAR_FIELDS))), later=True), pa.Table)
    opts = FeatureOptions(keep_raw_arrays=True)
    hf = layout.HfBuilder(opts)
    ts = np.array([1_733_000_000_000])
    raw = {c: pa.array([[1.0]], pa.list_(pa.float64())) for c in ("bid_px",)}
    table = hf.table(ts, pa.array([1], pa.int64()), np.zeros((len(hf.kernel), 1)), raw, later=True)
    assert isinstance(table, pa.Table) and "bid_px" in table.column_names
