"""etl.max_gap_seconds: a hole in exchange time resets like a gap event at the first row after it.

Books reset the book engine, trades the trade products; a hole just under the threshold
resets nothing.  Through the ETL the rule holds across segment boundaries and checkpoint
restarts (1 segment == 30 segments == a new runner every few segments).  The differential
tests (test_features_reference.py, test_trade_bars.py) compare the rule with the references.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from etl_support import T0_MS, read_tree, synthetic_market, tables_equal, write_segments
from fluxforge.config import EtlConfig, FeatureOptions, TradeOptions
from fluxforge.etl.engines import EngineBank
from fluxforge.etl.runner import EtlRunner
from fluxforge.etl.trade_products import TradeProducts
from fluxforge.features.engine import compute
from fluxforge.features.time_gaps import GapClock

HOLE = (T0_MS + 60_000, T0_MS + 130_000)  # nothing of BTC/USDT in these 70 s
FEATURES = FeatureOptions(bar_durations=[1, 5, 60], hf_emit_interval=0.5)
TRADES = TradeOptions(bar_durations=[1, 5, 60], volume_bar_size=0.7, dollar_bar_size=5_000.0)


def _holed(table: pa.Table, symbol: str | None = "BTC/USDT") -> pa.Table:
    ts = table.column("timestamp").to_numpy()
    inside = (ts >= HOLE[0]) & (ts < HOLE[1])
    if symbol is not None:
        inside &= np.asarray(table.column("symbol").to_pylist()) == symbol
    return table.filter(pa.array(~inside))


@pytest.fixture(scope="module")
def market():
    m = synthetic_market(symbols=("BTC/USDT", "ETH/USDT"), seconds=180, depth=10, seed=11)
    return dict(m, orderbook=_holed(m["orderbook"]), trades=_holed(m["trades"]))


def _btc(table: pa.Table) -> pa.Table:
    return table.filter(pc.equal(table.column("symbol"), "BTC/USDT")).sort_by("timestamp")


def _first_after(table: pa.Table) -> int:
    ts = table.column("timestamp").to_numpy()
    return int(ts[ts >= HOLE[1]][0])


def _hole_ms(table: pa.Table) -> int:
    """The time from the last row before the hole to the first after it (about 70 s)."""
    ts = table.column("timestamp").to_numpy()
    return _first_after(table) - int(ts[ts < HOLE[0]][-1])


def _same_result(a, b) -> bool:
    return tables_equal(a.hf, b.hf) and all(tables_equal(a.bars[d], b.bars[d]) for d in a.bars)


def test_gap_clock_finds_rows_after_holes_across_calls():
    clock = GapClock(1_000)
    assert clock.resets(np.array([0, 400, 1_400, 2_401])) == [2_401]
    assert clock.resets(np.array([3_401, 3_402])) == []          # exactly the threshold is no hole
    assert clock.resets(np.array([2_000, 4_500])) == [4_500]     # a late row never moves the clock back
    assert clock.last == 4_500 and GapClock(None, 0).resets(np.array([10**9])) == []
    with pytest.raises(ValueError):
        GapClock(0)


@pytest.mark.parametrize("seed", range(20))
def test_gap_clock_is_the_rule_row_by_row_in_calls_of_any_size(seed):
    """Random times (late rows, equal times, holes) fed in random pieces -- mostly a few rows, as the
    live path feeds them -- give exactly the rows the rule finds one row at a time."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.choice([0, 1, 300, 999, 1_000, 1_001, 5_000], size=300)) - rng.choice([0, 0, 0, 2_000], 300)
    newest, want = None, []
    for t in times.tolist():
        if newest is not None and t - newest > 1_000:
            want.append(t)
        newest = t if newest is None else max(newest, t)
    clock, got, start = GapClock(1_000), [], 0
    while start < len(times):
        end = start + int(rng.choice([1, 2, 3, 5, 40]))
        got += clock.resets(times[start:end])
        start = end
    assert got == want and clock.last == newest


def test_a_book_hole_resets_the_book_engine_like_a_gap_event(market):
    books, trades = _btc(market["orderbook"]), _btc(market["trades"])
    first = _first_after(books)
    gap = compute(books, trades, options=FEATURES, max_gap_ms=60_000)
    assert _same_result(gap, compute(books, trades, options=FEATURES, resets=[first]))
    under = compute(books, trades, options=FEATURES, max_gap_ms=_hole_ms(books))  # not longer: no reset
    plain = compute(books, trades, options=FEATURES)
    assert _same_result(under, plain) and not _same_result(gap, plain)
    ret = {int(t.timestamp() * 1000): r for t, r in zip(gap.hf.column("timestamp").to_pylist(),
                                                        gap.hf.column("log_return_step").to_pylist())}
    assert math.isnan(ret[first])                                   # no return across the hole
    row = plain.hf.filter(pc.equal(plain.hf.column("timestamp").cast(pa.int64()), first))
    assert math.isfinite(row.column("log_return_step")[0].as_py())


def _products(trades: pa.Table, max_gap_ms, resets=()):
    engine = TradeProducts(TRADES, max_gap_ms)
    return engine.process(trades, list(resets), until=HOLE[1] + 50_000)


def _same_products(a, b) -> bool:
    return a.keys() == b.keys() and all(tables_equal(a[k], b[k]) for k in a)


def test_a_trade_hole_resets_the_trade_products_like_a_gap_event(market):
    trades = _btc(market["trades"])
    first = _first_after(trades)
    gap = _products(trades, 60_000)
    assert _same_products(gap, _products(trades, None, [first]))
    plain = _products(trades, None)
    assert _same_products(_products(trades, _hole_ms(trades)), plain) and not _same_products(gap, plain)


def _run(root, market, n, max_gap_ms=60_000, runs=1):
    segs = write_segments(root / "staging", market, n, seconds=180)
    (root / "segments/ready").mkdir(parents=True)
    per_run = -(-len(segs) // runs)
    for i in range(0, len(segs), per_run):  # a new runner (restored from the checkpoint) per run
        for seg in segs[i:i + per_run]:
            seg.rename(root / "segments/ready" / seg.name)
        outcomes = EtlRunner(root / "segments", root / "features", root / "state", FEATURES,
                             trade_options=TRADES, max_gap_ms=max_gap_ms).run_once()
        assert [o.state for o in outcomes] == ["done"] * len(segs[i:i + per_run])
    return root / "features"


TREES = ("hf", "bars", "trade_bars", "volume_bars", "dollar_bars")


def test_etl_resets_at_holes_alike_in_one_segment_thirty_and_after_restarts(tmp_path, market):
    one = _run(tmp_path / "one", market, 1)
    thirty = _run(tmp_path / "thirty", market, 30)
    restarts = _run(tmp_path / "restarts", market, 12, runs=4)
    for kind in TREES:
        a = read_tree(one, kind)
        assert a.num_rows > 0 and tables_equal(a, read_tree(thirty, kind)) and tables_equal(a, read_tree(restarts, kind)), kind
    first = _first_after(_btc(market["orderbook"]))
    hf = read_tree(thirty, "hf")
    row = hf.filter(pc.and_(pc.equal(hf.column("symbol"), "BTC-USDT"),
                            pc.equal(hf.column("timestamp").cast(pa.int64()), first)))
    assert row.num_rows == 1 and math.isnan(row.column("log_return_step")[0].as_py())
    # without the rule (a threshold above the hole) the same row has a return across the hole
    loose = read_tree(_run(tmp_path / "loose", market, 30, max_gap_ms=600_000), "hf")
    row = loose.filter(pc.and_(pc.equal(loose.column("symbol"), "BTC-USDT"),
                               pc.equal(loose.column("timestamp").cast(pa.int64()), first)))
    assert math.isfinite(row.column("log_return_step")[0].as_py())


def test_the_threshold_is_config_and_part_of_the_checkpoint_fingerprint():
    assert EtlConfig().max_gap_seconds == 60 and EtlConfig(max_gap_seconds=2.5).max_gap_ms == 2_500
    with pytest.raises(ValueError, match="max_gap_seconds"):
        EtlConfig(max_gap_seconds=0)
    opts = FeatureOptions()
    assert EngineBank(opts).fingerprint == EngineBank(opts, max_gap_ms=60_000).fingerprint
    assert EngineBank(opts, max_gap_ms=30_000).fingerprint != EngineBank(opts).fingerprint
    bank = EngineBank(opts, max_gap_ms=30_000)
    bank.state(("binance", "BTC/USDT"))
    with pytest.raises(ValueError, match="max_gap_ms"):
        EngineBank(opts, max_gap_ms=60_000).restore(bank.snapshot())
