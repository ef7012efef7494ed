"""Per-trade features (features/trades/): the Cython kernel against the definition-level reference.

Random trade streams (ties, redelivered trades, unknown and odd sides, invalid prices,
resets, gaps that leave a window with nothing but the trade itself) go through the ETL's
own de-duplication and the trade products in random chunks, with a checkpoint round trip
between chunks; the rows must equal the reference to 1e-9 relative, and equal the
one-chunk run bit for bit (N chunks == 1).
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxforge.config import TradeOptions
from fluxforge.etl.trade_dedupe import SeenIds, drop_repeated
from fluxforge.etl.trade_products import TradeProducts
from fluxforge.features.trade_layout import TRADES, per_trade_fields
from tests.etl_support import tables_equal
from tests.reference.per_trade_reference import per_trade
from tests.reference.compare import assert_value
from tests.reference.synthetic import trades_from_rows

HORIZONS = [1, 5, 60]
SIDES = {"buy": 1, "sell": -1}


def run_chunked(rows, resets, cuts, horizons=HORIZONS) -> tuple[pa.Table | None, TradeProducts]:
    """Feed [cut_i, cut_i+1) per chunk through the ETL's de-duplication and the trade products,
    restoring both (the seen ids, the kernels) from their checkpoint form in between."""
    opts = TradeOptions(bar_durations=[], volume_bar_size=0.0, dollar_bar_size=0.0, per_trade=True, horizons=horizons)
    engine, seen, out = TradeProducts(opts), SeenIds(), []
    for lo, hi in zip(cuts, cuts[1:]):
        chunk = trades_from_rows([r for r in rows if lo <= r[0] < hi])
        chunk, _ = drop_repeated(chunk, seen, chunk.column("timestamp").to_numpy())
        products = engine.process(chunk, [r for r in resets if lo <= r < hi])
        assert set(products) <= {(TRADES, 0)}
        if (TRADES, 0) in products:
            out.append(products[(TRADES, 0)])
        engine = TradeProducts.from_state(engine.get_state(), opts)
        seen = SeenIds(dict(seen.ids))  # as the carry stores them
    return (pa.concat_tables(out) if out else None), engine


def reference(rows, resets, horizons=HORIZONS) -> list[dict]:
    """The definition: each trade id counted once (its first delivery), then per_trade()."""
    ids, trades, valid_ids = set(), [], []
    for ts, tid, p, q, side in rows:
        if tid in ids:
            continue
        ids.add(tid)
        trades.append((ts, p, q, SIDES.get(side, 0)))
        if math.isfinite(p) and math.isfinite(q) and p > 0 and q > 0:
            valid_ids.append(tid)
    out = per_trade(trades, resets, horizons)
    for row, tid in zip(out, valid_ids, strict=True):
        row["trade_id"] = tid
    return out


def assert_rows_match(got: pa.Table | None, want: list[dict], horizons=HORIZONS) -> None:
    rows = got.to_pylist() if got is not None else []
    assert len(rows) == len(want), (len(rows), len(want))
    if got is not None:
        assert got.column_names == per_trade_fields(horizons)
    for i, (g, w) in enumerate(zip(rows, want)):
        assert round(g["timestamp"].timestamp() * 1000) == w["timestamp"], i
        for name in per_trade_fields(horizons)[1:]:
            assert_value(g[name], w[name], (i, name))


@st.composite
def stream(draw):
    n = draw(st.integers(0, 60))
    t = draw(st.integers(0, 10_000_000))
    rows = []
    for i in range(n):
        if rows and draw(st.integers(0, 9)) == 0:
            rows.append(rows[draw(st.integers(max(0, len(rows) - 5), len(rows) - 1))])  # redelivered
            rows.sort(key=lambda r: r[0])
            continue
        t += draw(st.sampled_from([0, 0, 1, 7, 250, 999, 1000, 1001, 4000, 5000, 61_000]))
        price = draw(st.sampled_from([100.0, 0.0, float("nan")]) if draw(st.integers(0, 15)) == 0
                     else st.sampled_from([100.0, 100.5, 99.25, 101.0, 100.01]))
        amount = draw(st.sampled_from([0.001, 0.5, 1.0, 2.25, 7.0]))
        side = draw(st.sampled_from(["buy", "sell", "buy", "sell", None, "unknown"]))
        rows.append((t, f"t{i}", price, amount, side))
    start = rows[0][0] if rows else t
    end = t + draw(st.integers(0, 10_000))
    times = [r[0] for r in rows]
    resets = sorted(draw(st.lists(st.one_of(st.integers(start, end), st.sampled_from(times or [start])), max_size=4)))
    inner = sorted(set(draw(st.lists(st.integers(start + 1, end + 1), max_size=4))))
    cuts = [start] + [c for c in inner if c <= end] + [end + 1]
    return rows, resets, cuts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream())
def test_kernel_matches_reference_in_any_chunking(s):
    rows, resets, cuts = s
    got, _ = run_chunked(rows, resets, cuts)
    assert_rows_match(got, reference(rows, resets))
    one, _ = run_chunked(rows, resets, [cuts[0], cuts[-1]])
    assert (got is None and one is None) or tables_equal(got, one)  # N chunks == 1, bit for bit


def test_unknown_sides_and_a_reset_by_hand():
    rows = [(1_000, "1", 100.0, 1.0, "buy"), (1_000, "2", 101.0, 3.0, None), (2_000, "3", 99.0, 2.0, "sell"),
            (2_000, "3", 99.0, 2.0, "sell"), (9_000, "4", 100.0, 1.0, "buy")]
    got, engine = run_chunked(rows, [9_000], [0, 20_000], horizons=[5])
    r = got.to_pylist()
    assert [x["trade_id"] for x in r] == ["1", "2", "3", "4"]   # the redelivered "3" counted once
    assert r[1]["side"] is None and r[1]["is_buy"] is None and r[1]["signed_volume"] is None
    assert r[2]["signed_volume"] == -2.0 and r[2]["is_buy"] is False
    assert r[2]["volume_5s"] == 6.0 and r[2]["trade_count_5s"] == 3
    assert r[2]["vwap_5s"] == pytest.approx((100 + 303 + 198) / 6)
    assert r[2]["buy_ratio_5s"] == pytest.approx(1 / 3) and r[2]["tfi_5s"] == pytest.approx(-1 / 3)
    assert r[2]["realized_var_5s"] == pytest.approx(math.log(1.01) ** 2 + math.log(99 / 101) ** 2)
    assert r[1]["buy_ratio_5s"] == 1.0            # the unknown side is left out of the ratio
    assert math.isnan(r[3]["log_return"])          # the reset at 9 s: no return across it
    assert r[3]["trade_count_5s"] == 1 and r[3]["realized_var_5s"] == 0.0
    assert engine.stats()["resets"] == 1


def test_long_windows_across_checkpoints():
    """Windows of thousands of trades: the kernel's saved entries grow and are trimmed across chunks."""
    rng = np.random.default_rng(3)
    n = 2500
    ts = np.sort(rng.integers(0, 40_000, n)) + 1_723_075_200_000
    px = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    sides = rng.choice(["buy", "sell", None], n, p=[0.45, 0.45, 0.1])
    rows = [(int(t), str(i), float(p), float(q), s)
            for i, (t, p, q, s) in enumerate(zip(ts, px, rng.exponential(0.5, n) + 1e-4, sides))]
    cuts = [int(ts[0])] + [int(c) for c in np.linspace(ts[0], ts[-1], 7)[1:-1]] + [int(ts[-1]) + 1]
    horizons = [2, 30]
    got, _ = run_chunked(rows, [int(ts[n // 2])], cuts, horizons=horizons)
    assert_rows_match(got, reference(rows, [int(ts[n // 2])], horizons), horizons)
    assert max(got.column("trade_count_30s").to_pylist()) > 1024


def test_off_by_default_and_a_wrong_checkpoint_is_refused():
    assert TradeOptions().per_trade is False
    assert (TRADES, 0) not in TradeProducts(TradeOptions()).process(trades_from_rows([(1, "1", 1.0, 1.0, "buy")]), [])
    from fluxforge._kernels.trade_features import TradeFeatureEngine

    state = TradeFeatureEngine([5000]).get_state()
    with pytest.raises(ValueError, match="wrong size"):
        TradeFeatureEngine([5000, 60000]).set_state(state)
