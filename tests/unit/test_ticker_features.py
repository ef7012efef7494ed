"""Ticker features: the Cython kernel against the definition-level reference.

Random ticker streams (ties in time, missing and crossed quotes, missing and zero
sizes, redelivered duplicates, resets) are cut into random chunks with a checkpoint
round trip between chunks, so the same test also proves N chunks == 1.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxforge.config import TradeOptions
from fluxforge.etl.trade_products import TradeProducts
from fluxforge.features.ticker_layout import TICKER, TICKER_INPUTS, ticker_fields
from tests.reference.ticker_reference import ticker_features

HORIZONS = [1, 5, 60]
NAN = float("nan")


def ticker_table(rows: list[tuple]) -> pa.Table:
    """Bronze-like ticker rows: a NaN input is stored as null, as the collector writes a missing key."""
    cols = {"timestamp": pa.array([r[0] for r in rows], pa.int64())}
    for i, name in enumerate(TICKER_INPUTS, start=1):
        cols[name] = pa.array([None if math.isnan(r[i]) else r[i] for r in rows], pa.float64())
    return pa.table(cols)


def run_chunked(rows, resets, cuts, horizons=HORIZONS):
    """Feed [cut_i, cut_i+1) per chunk, restoring the products from their checkpoint in between."""
    opts = TradeOptions(bar_durations=[], dollar_bar_size=0.0, ticker_horizons=horizons)
    engine = TradeProducts(opts)
    out = []
    for lo, hi in zip(cuts, cuts[1:]):
        chunk = [r for r in rows if lo <= r[0] < hi]
        res = [r for r in resets if lo <= r < hi]
        table = engine.process(None, res, None, ticker_table(chunk)).get((TICKER, 0))
        if table is not None:
            out.extend(table.to_pylist())
        engine = TradeProducts.from_state(engine.get_state(), opts)
    return out, engine


def close(a: float, b: float, row: dict | None = None, name: str = "", rel: float = 1e-9) -> bool:
    """Equal to 1e-9 relative.  A mid_std_{h}s may also be off by 1e-15 of its window's mean mid:
    below that the double-double sums cannot resolve it (docs/features.md, "Ticker features")."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b or abs(a - b) <= rel * max(abs(a), abs(b)):
        return True
    if name.startswith("mid_std_"):
        return abs(a - b) <= 1e-15 * abs(row[name.replace("mid_std_", "mid_mean_")])
    return False


def assert_rows_equal(got: list[dict], want: list[dict], horizons=HORIZONS) -> None:
    assert len(got) == len(want), (len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        assert int(round(g["timestamp"].timestamp() * 1000)) == w["timestamp"], i
        for name in ticker_fields(horizons)[1:]:
            assert close(g[name], w[name], g, name), (i, name, g[name], w[name])


@st.composite
def stream(draw):
    n = draw(st.integers(0, 80))
    ts = draw(st.integers(1_700_000_000_000, 1_700_000_100_000))
    rows = []
    for _ in range(n):
        if rows and draw(st.integers(0, 9)) == 0:
            rows.append(rows[-1])  # a redelivered ticker
            continue
        ts += draw(st.sampled_from([0, 0, 1, 250, 999, 1000, 1001, 3000, 20_000, 70_000]))
        level = draw(st.integers(0, 40))
        bid = 30_000 + level * 0.01
        ask = bid + draw(st.sampled_from([0.01, 0.01, 0.02, 0.0, 0.5]))
        kind = draw(st.integers(0, 12))
        if kind == 0:
            bid = NAN
        elif kind == 1:
            ask = NAN
        elif kind == 2:
            bid, ask = ask + 0.01, bid  # crossed
        elif kind == 3:
            bid = 0.0
        sizes = [draw(st.sampled_from([0.0, 0.001, 1.5, 2.25, 10.0, NAN])) for _ in range(2)]
        last = draw(st.sampled_from([bid, ask, NAN]))
        rows.append((ts, bid, ask, *sizes, last, 30_000.5, 1234.5 + len(rows), 3.7e7 + len(rows)))
    span = (rows[0][0] if rows else 0, (rows[-1][0] if rows else 0) + 1)
    resets = sorted(draw(st.lists(st.integers(*span), max_size=3)))
    cuts = sorted(set(draw(st.lists(st.integers(*span), max_size=5))) | {span[0], span[1]})
    return rows, resets, cuts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream())
def test_kernel_matches_reference_in_any_chunking(s):
    rows, resets, cuts = s
    got, _ = run_chunked(rows, resets, cuts)
    assert_rows_equal(got, ticker_features(rows, resets, HORIZONS))


def test_windows_are_half_open_and_include_the_row():
    t0 = 1_700_000_000_000
    rows = [(t0 + dt, bid, bid + 2.0, 1.0, 3.0, NAN, NAN, NAN, NAN)
            for dt, bid in ((0, 100.0), (500, 102.0), (1000, 104.0))]
    got, _ = run_chunked(rows, [], [t0, t0 + 2000])
    # the row at t0 + 1000 has (t0, t0 + 1000] in its 1 s window: the row at t0 is out
    assert got[2]["mid_mean_1s"] == 104.0 and got[2]["mid_mean_5s"] == 103.0
    assert got[2]["mid_std_1s"] == math.sqrt(2.0)
    assert got[2]["spread_mean_5s"] == 2.0 and got[0]["mid_std_5s"] != got[0]["mid_std_5s"]  # NaN: one mid
    assert got[1]["volume_imbalance"] == -0.5 and got[1]["vol_imbalance_mean_60s"] == -0.5


def test_edge_cases_are_defined_and_counted():
    t0 = 1_700_000_000_000
    good = (t0, 100.0, 101.0, 1.0, 1.0, 100.5, NAN, NAN, NAN)
    crossed = (t0 + 1, 102.0, 101.0, 1.0, 0.0, NAN, NAN, NAN, NAN)
    no_bid = (t0 + 2, NAN, 101.0, NAN, 1.0, NAN, NAN, NAN, NAN)
    late = (t0 + 1, 100.0, 101.0, 1.0, 1.0, NAN, NAN, NAN, NAN)
    rows = [good, good, crossed, no_bid]
    opts = TradeOptions(bar_durations=[], dollar_bar_size=0.0, ticker_horizons=[5])
    engine = TradeProducts(opts)
    got = engine.process(None, [], None, ticker_table(rows))[(TICKER, 0)].to_pylist()
    assert len(got) == 3  # the redelivered `good` is dropped
    assert math.isnan(got[1]["mid_price"]) and got[1]["bid"] == 102.0 and got[1]["volume_imbalance"] == 1.0
    assert math.isnan(got[2]["spread"]) and math.isnan(got[2]["volume_imbalance"])
    assert got[2]["mid_mean_5s"] == 100.5 and got[2]["vol_imbalance_mean_5s"] == 0.5
    assert (TICKER, 0) not in engine.process(None, [], None, ticker_table([late]))
    stats = engine._ticker.stats()
    assert (stats["duplicates"], stats["crossed"], stats["late_dropped"]) == (1, 1, 1)


def test_a_reset_empties_the_windows():
    t0 = 1_700_000_000_000
    rows = [(t0 + i * 100, 100.0 + i, 101.0 + i, 1.0, 1.0, NAN, NAN, NAN, NAN) for i in range(4)]
    got, engine = run_chunked(rows, [t0 + 200], [t0, t0 + 1000])
    assert [r["mid_mean_60s"] for r in got] == [100.5, 101.0, 102.5, 103.0]
    assert engine._ticker.stats()["resets"] == 1


def test_thirty_chunks_equal_one_bit_for_bit():
    rng = np.random.default_rng(7)
    t0 = 1_700_000_000_000
    ts = t0 + np.cumsum(rng.integers(0, 900, 3000))
    bid = 60_000 + np.round(np.cumsum(rng.normal(0, 0.5, 3000)), 2)
    rows = [(int(t), float(b), float(b) + 0.01 * int(rng.integers(1, 4)), float(rng.random()), float(rng.random()),
             float(b), NAN, 1e4 + i, 6e8 + i) for i, (t, b) in enumerate(zip(ts, bid))]
    resets = [int(ts[1000]), int(ts[2000]) + 1]
    one, _ = run_chunked(rows, resets, [t0, int(ts[-1]) + 1], [5, 60, 300])
    cuts = sorted({t0, int(ts[-1]) + 1} | {int(c) for c in np.linspace(t0, ts[-1], 31)[1:-1]})
    many, _ = run_chunked(rows, resets, cuts, [5, 60, 300])
    assert len(one) == len(many) == len(rows)
    for a, b in zip(one, many):
        assert all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)
    # and right: the features are causal, so the reference of a prefix (past the first reset) is a prefix
    assert_rows_equal(one[:1200], ticker_features(rows[:1200], resets[:1], [5, 60, 300]), [5, 60, 300])
