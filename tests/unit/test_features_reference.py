"""Differential tests: the Cython engine against the slow reference (tests/reference/),
on random books with edge cases and on books rebuilt from real Binance captures;
plus the streaming guarantees (N chunks == 1 chunk, checkpoint round trip)."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fluxforge.features.engine import FeatureEngine, compute, concat_results
from tests.reference.stream_reference import reference

T0 = 1_723_161_600_000
RTOL = 1e-9
ATOL = 1e-12  # floor for values that cancel to ~0 (sums of signed terms)


def _cmp(a, b, rtol=RTOL, atol=ATOL):
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, int) and isinstance(b, int):
        return a == b
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= rtol * abs(b) + atol


def _atol(name):
    # (sb - sa)/(sb + sa) of the two depth slopes, each held to RTOL of itself: when they are nearly
    # equal the quotient is ~0 and its error up to 2 * RTOL (a regression over depths of 32, 32.001,
    # ... leaves the slopes ~1e-12 of themselves apart: a 1.5e-12 asymmetry against 1.2e-13)
    return 2 * RTOL if name == "depth_slope_asymmetry" else ATOL


def _rtol(name, mode):
    # NumPy's pairwise sums round the book totals differently; slope momentum (the change of
    # total/(mid - deepest price) between snapshots, up to 1e4 with a 1-tick-deep book) amplifies
    # that by the cancellation, so only against the NumPy spelling it gets a looser bound.
    return 1e-6 if mode == "numpy" and name.startswith("slope_momentum") else RTOL


def assert_matches_reference(result, books, trades, resets, mode="python", **opts):
    ref_hf, ref_bars = reference(books, trades, resets, mode=mode, **opts)
    got = result.hf.to_pylist()
    assert len(got) == len(ref_hf)
    for i, (g, r) in enumerate(zip(got, ref_hf)):
        g = dict(g, timestamp=int(g["timestamp"].timestamp() * 1000))
        bad = {k: (g[k], v) for k, v in r.items()
               if not _cmp(g[k], v, _rtol(k, mode), _atol(k))}
        assert not bad, f"hf row {i}: {bad}"
    for d, rows in ref_bars.items():
        got_bars = result.bars[d].to_pylist()
        assert len(got_bars) == len(rows), f"bars {d}s"
        for i, (g, r) in enumerate(zip(got_bars, rows)):
            g = dict(g, timestamp=int(g["timestamp"].timestamp() * 1000))
            bad = {k: (g[k], v) for k, v in r.items() if not _cmp(g[k], v)}
            assert not bad, f"bar {d}s row {i}: {bad}"


# ---------------------------------------------------------------- random books
SMALL = dict(horizons=[0.5, 2.0], bar_durations=[1, 3], spread_regime_window=2.0, kyle_lambda_window=2.0,
             momentum_window=1.0, vpin_bucket_volume=1.0, vpin_window_buckets=3, max_levels=4, ofi_levels=3,
             bands_bps=[5.0, 20.0, 60.0])

size_st = st.one_of(st.floats(0.001, 50.0), st.sampled_from([0.0, float("nan"), float("inf"), 1.0, 2.0]))


@st.composite
def level_side(draw, best, sign, max_n=6):
    n = draw(st.integers(0, max_n))
    gaps = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    prices, p = [], best
    for g in gaps:
        prices.append(round(p, 2))
        p += sign * 0.01 * g
    sizes = draw(st.lists(size_st, min_size=n, max_size=n))
    if n and draw(st.integers(0, 9)) == 0:
        prices[draw(st.integers(0, n - 1))] = draw(st.sampled_from([float("nan"), 0.0, -1.0]))
    return prices, sizes


# etl.max_gap_seconds: off, or thresholds that book steps (0-700 ms) fall below, on and above
GAP_MS = st.sampled_from([None, None, 150, 400, 699])


@st.composite
def market(draw, max_n=6, levels=None):
    n = draw(st.integers(1, 40))
    ts = T0 + np.cumsum(draw(st.lists(st.integers(0, 700), min_size=n, max_size=n))).astype(np.int64)
    rows = {"timestamp": ts.tolist(), "nonce": list(range(n)), "bid_px": [], "bid_sz": [], "ask_px": [], "ask_sz": []}
    mid = 100.0
    for _ in range(n):
        mid += 0.01 * draw(st.integers(-3, 3))
        spread = 0.01 * draw(st.integers(-2, 4))  # <0: crossed, 0: locked
        bp, bs = draw(level_side(round(mid - spread / 2, 2), -1, max_n))
        ap, asz = draw(level_side(round(mid + spread / 2, 2), 1, max_n))
        rows["bid_px"].append(bp); rows["bid_sz"].append(bs); rows["ask_px"].append(ap); rows["ask_sz"].append(asz)
    books = pa.table(rows)
    m = draw(st.integers(0, 40))
    tts = sorted(draw(st.lists(st.integers(int(ts[0]) - 500, int(ts[-1]) + 500), min_size=m, max_size=m)))
    trades = pa.table({
        "timestamp": pa.array(tts, pa.int64()),
        "price": pa.array(draw(st.lists(st.sampled_from([99.98, 100.0, 100.03, float("nan")]), min_size=m, max_size=m))),
        "amount": pa.array(draw(st.lists(st.one_of(st.integers(0, 3000).map(lambda k: k / 1000),
                                                   st.just(float("nan"))), min_size=m, max_size=m))),
        "side": pa.array(draw(st.lists(st.sampled_from(["buy", "sell", None]), min_size=m, max_size=m)), pa.string()),
    })
    resets = draw(st.lists(st.integers(int(ts[0]), int(ts[-1]) + 1), max_size=2))
    opts = dict(SMALL, **(levels or {}), hf_emit_interval=draw(st.sampled_from([0.0, 0.5])),
                use_dynamic_spread_regime=draw(st.booleans()), ofi_decay_alpha=draw(st.sampled_from([0.0, 0.7])),
                max_gap_ms=draw(GAP_MS))
    return books, trades, resets, opts


# found by the test (CI, stop 35): depth slopes equal to 1e-12 of themselves, an asymmetry of noise
NEAR_EQUAL_DEPTH_SLOPES = (
    pa.table({"timestamp": [T0], "nonce": [0], "bid_px": [[float("nan"), 99.99, 99.98]], "bid_sz": [[1.0, 1.0, 0.001]],
              "ask_px": [[100.0, 100.01, 100.02, 100.03, 100.04]], "ask_sz": [[32.0, 0.001, 0.001, 0.001, 1.0]]}),
    pa.table({"timestamp": pa.array([], pa.int64()), "price": pa.array([], pa.float64()),
              "amount": pa.array([], pa.float64()), "side": pa.array([], pa.string())}),
    [], dict(SMALL, hf_emit_interval=0.0, use_dynamic_spread_regime=False, ofi_decay_alpha=0.0, max_gap_ms=None))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(market())
@example(NEAR_EQUAL_DEPTH_SLOPES)
def test_random_books_match_reference(case):
    books, trades, resets, opts = case
    assert_matches_reference(compute(books, trades, resets=resets, **opts), books, trades, resets, **opts)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(market())
def test_random_books_match_numpy_reference(case):
    books, trades, resets, opts = case
    assert_matches_reference(compute(books, trades, resets=resets, **opts), books, trades, resets, mode="numpy", **opts)


DEEP = dict(max_levels=12, ofi_levels=5)  # enough levels for imbalance_top10 and the depth decay (5th level)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(market(max_n=14, levels=DEEP))
def test_random_deep_books_match_reference(case):
    books, trades, resets, opts = case
    assert_matches_reference(compute(books, trades, resets=resets, **opts), books, trades, resets, **opts)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(market(max_n=14, levels=DEEP))
def test_random_deep_books_match_numpy_reference(case):
    books, trades, resets, opts = case
    assert_matches_reference(compute(books, trades, resets=resets, **opts), books, trades, resets, mode="numpy", **opts)


def _same(a: pa.Table, b: pa.Table):
    assert a.schema == b.schema and a.num_rows == b.num_rows
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        assert all(u == v or (isinstance(u, float) and math.isnan(u) and math.isnan(v)) for u, v in zip(x, y)), name


def _time_chunks(table, cuts):
    ts = table.column("timestamp").to_numpy()
    edges = [-1] + sorted(cuts) + [2**62]
    return [table.filter(pa.array((ts > a) & (ts <= b))) for a, b in zip(edges, edges[1:])]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(market(), st.data())
def test_chunked_stream_equals_one_batch_and_state_round_trips(case, data):
    """Chunks cut by time (as segments are), at any millisecond, with a checkpoint in between."""
    books, trades, resets, opts = case
    whole = compute(books, trades, resets=resets, **opts)
    k = data.draw(st.integers(1, 5))
    ts = books.column("timestamp").to_pylist()
    cuts = data.draw(st.lists(st.integers(ts[0] - 600, ts[-1] + 600), min_size=k - 1, max_size=k - 1))
    checkpoint_after = data.draw(st.integers(0, k - 1))
    engine = FeatureEngine(**opts)
    parts = []
    edges = [-1] + sorted(cuts) + [2**62]
    for i, (bc, tc) in enumerate(zip(_time_chunks(books, cuts), _time_chunks(trades, cuts))):
        mine = [r for r in resets if edges[i] < r <= edges[i + 1]]   # each reset arrives with its segment
        parts.append(engine.process(bc, tc, resets=mine))
        if i == checkpoint_after:
            engine = FeatureEngine.from_state(engine.get_state(), **opts)
    parts.append(engine.flush())
    assert engine.stats()["late_dropped"] == 0
    streamed = concat_results(parts)
    _same(streamed.hf, whole.hf)
    for d in whole.bars:
        _same(streamed.bars[d], whole.bars[d])


# ------------------------------------------------------- long and gappy streams
# The small random markets above never hold more than 40 books, so the kernels' ring buffers
# (1,024 entries, doubled when a window holds more), a checkpoint taken after such a resize,
# runs of empty bars and the empty-bar cap are never compared with the reference.  These are.

def _long_books(rng, ts):
    n = len(ts)
    mid = 100.0 + 0.01 * np.cumsum(rng.integers(-3, 4, n))
    spread = 0.01 * rng.choice([-1, 0, 1, 2, 3], n, p=[0.02, 0.03, 0.45, 0.3, 0.2])
    rows = {"timestamp": ts.tolist(), "nonce": list(range(n)), "bid_px": [], "bid_sz": [], "ask_px": [], "ask_sz": []}
    for i in range(n):
        k = int(rng.integers(1, 5))
        best_bid, best_ask = round(mid[i] - spread[i] / 2, 2), round(mid[i] + spread[i] / 2, 2)
        rows["bid_px"].append([round(best_bid - 0.01 * j, 2) for j in range(k)])
        rows["ask_px"].append([round(best_ask + 0.01 * j, 2) for j in range(k)])
        rows["bid_sz"].append(rng.uniform(0.01, 5, k).round(3).tolist())
        rows["ask_sz"].append(rng.uniform(0.01, 5, k).round(3).tolist())
    return pa.table(rows)


@st.composite
def long_market(draw):
    """1,100-1,500 books, mostly 0-1 ms apart (over 1,024 inside every window), with gaps of
    seconds to minutes (empty bars, windows that empty out) and as many trades."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1100, 1500))
    steps = rng.integers(0, 2, n)
    for pos in rng.integers(1, n, draw(st.integers(1, 4))):
        steps[pos] = draw(st.sampled_from([2_500, 7_000, 65_000, 400_000]))
    ts = T0 + np.cumsum(steps).astype(np.int64)
    books = _long_books(rng, ts)
    m = draw(st.integers(1100, 1500))
    tts = np.sort(rng.choice(ts, m) + rng.integers(-2, 3, m))
    trades = pa.table({
        "timestamp": pa.array(tts, pa.int64()),
        "price": pa.array(rng.choice([99.98, 100.0, 100.03], m)),
        "amount": pa.array(rng.integers(1, 3000, m) / 1000),
        "side": pa.array(rng.choice(["buy", "sell"], m).tolist(), pa.string()),
    })
    resets = sorted(int(r) for r in rng.choice(ts, draw(st.integers(0, 2))))
    opts = dict(SMALL, hf_emit_interval=draw(st.sampled_from([0.0, 0.5])),
                use_dynamic_spread_regime=draw(st.booleans()),
                max_gap_ms=draw(st.sampled_from([None, 5_000, 60_000])))  # holes: 2.5 s, 7 s, 65 s, 400 s
    return books, trades, resets, opts


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(long_market())
def test_long_gappy_streams_match_reference(case):
    books, trades, resets, opts = case
    result = compute(books, trades, resets=resets, **opts)
    assert any(r["is_empty"] for r in result.bars[1].to_pylist())  # empty bars were compared
    assert_matches_reference(result, books, trades, resets, mode="numpy", **opts)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(long_market(), st.data())
def test_checkpoint_after_ring_growth_streams_like_one_batch(case, data):
    """Checkpoint after more than 1,024 books (the rings have grown), restore, go on."""
    books, trades, resets, opts = case
    whole = compute(books, trades, resets=resets, **opts)
    ts = books.column("timestamp").to_pylist()
    cut = ts[data.draw(st.integers(1050, len(ts) - 2))]
    engine = FeatureEngine(**opts)
    first = engine.process(*[t.filter(pa.compute.less_equal(t.column("timestamp"), cut)) for t in (books, trades)],
                           resets=[r for r in resets if r <= cut])
    engine = FeatureEngine.from_state(engine.get_state(), **opts)
    second = engine.process(*[t.filter(pa.compute.greater(t.column("timestamp"), cut)) for t in (books, trades)],
                            resets=[r for r in resets if r > cut])
    streamed = concat_results([first, second, engine.flush()])
    _same(streamed.hf, whole.hf)
    for d in whole.bars:
        _same(streamed.bars[d], whole.bars[d])


@pytest.mark.parametrize("empty", [86_400, 86_401])
def test_empty_bar_cap_matches_reference(empty):
    """Up to 86,400 empty 1 s bars are written between two books; one more and none are."""
    ts = np.array([T0, T0 + 300, T0 + (empty + 1) * 1000, T0 + (empty + 1) * 1000 + 400], dtype=np.int64)
    books = _long_books(np.random.default_rng(empty), ts)
    trades = pa.table({"timestamp": pa.array([], pa.int64()), "price": pa.array([], pa.float64()),
                       "amount": pa.array([], pa.float64()), "side": pa.array([], pa.string())})
    opts = dict(SMALL, bar_durations=[1])
    result = compute(books, trades, **opts)
    n_empty = sum(r["is_empty"] for r in result.bars[1].to_pylist())
    assert n_empty == (empty if empty <= 86_400 else 0)
    assert_matches_reference(result, books, trades, [], mode="numpy", **opts)


# ------------------------------------------------------------------ real books
@pytest.mark.realdata
@pytest.mark.parametrize("name", ["btcusdt_20240808.gz", "ethusdt_20240808.gz"])
def test_real_capture_matches_reference(shared_capture, name):
    from tests.reference.binance_capture import load

    books, trades = load(shared_capture / name, symbol=name[:3].upper() + "/USDT")
    ts = books.column("timestamp").to_pylist()
    resets = [ts[len(ts) // 2]]                                   # a resync in the middle
    opts = dict(hf_emit_interval=1.0, vpin_bucket_volume=1.0 if name.startswith("btc") else 20.0,
                spread_regime_window=120.0)
    assert_matches_reference(compute(books, trades, resets=resets, **opts), books, trades, resets, **opts)
    head = books.slice(0, 600)
    opts0 = dict(opts, hf_emit_interval=0.0)
    assert_matches_reference(compute(head, trades, resets=resets, **opts0), head, trades, resets, **opts0)


@pytest.mark.realdata
def test_real_capture_streamed_in_segments_equals_batch(shared_capture):
    from tests.reference.binance_capture import load

    books, trades = load(shared_capture / "btcusdt_20240808.gz")
    whole = compute(books, trades, hf_emit_interval=0.0)
    engine = FeatureEngine(hf_emit_interval=0.0)
    parts = []
    bts = books.column("timestamp").to_numpy()
    tts = trades.column("timestamp").to_numpy()
    edges = [-1] + [int(x) for x in np.linspace(bts[0], bts[-1], 7)[1:-1]] + [2**62]
    for a, b in zip(edges, edges[1:]):   # 6 "segments" cut by time, as the ETL sees them
        bmask = pa.array((bts > a) & (bts <= b))
        tmask = pa.array((tts > a) & (tts <= b))
        parts.append(engine.process(books.filter(bmask), trades.filter(tmask)))
        engine = FeatureEngine.from_state(engine.get_state(), hf_emit_interval=0.0)
    parts.append(engine.flush())
    assert engine.stats()["trades"] == trades.num_rows and engine.stats()["late_dropped"] == 0
    streamed = concat_results(parts)
    _same(streamed.hf, whole.hf)
    for d in whole.bars:
        _same(streamed.bars[d], whole.bars[d])
