"""FeatureEngine runs a big batch through the rebuild and the kernel a block of books at a time
(features/book_blocks.py, engine.BLOCK_BOOKS): the blocks must give exactly the rows of one call.

Compared bit for bit against one block, with blocks of 1-4 books (every boundary a block can
have), on random snapshot markets with resets, trades at the books' times and time-gap resets,
on random delta streams with gaps, stale and contradicting snapshots (resyncs), on long gappy
streams, and on the real captures at full depth with every row emitted."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxforge.features import engine as feature_engine
from fluxforge.features.book_blocks import blocks
from fluxforge.features.engine import compute
from tests.unit.test_book_rebuild import stream
from tests.unit.test_features_reference import _same, long_market, market

SLOW = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ONE_BLOCK = 1 << 62


def _in_blocks(size, books, trades, **kw):
    """compute() with blocks of `size` books (hypothesis runs many examples per test: no fixture)."""
    before = feature_engine.BLOCK_BOOKS
    feature_engine.BLOCK_BOOKS = size
    try:
        return compute(books, trades, **kw)
    finally:
        feature_engine.BLOCK_BOOKS = before


def _blocks_equal_one_call(size, books, trades, **kw):
    """compute() in blocks of `size` books equals one call, bit for bit; returns the one call's result."""
    whole = _in_blocks(ONE_BLOCK, books, trades, **kw)
    _assert_same(_in_blocks(size, books, trades, **kw), whole)
    return whole


def _assert_same(a, b):
    _same(a.hf, b.hf)
    assert sorted(a.bars) == sorted(b.bars)
    for d in a.bars:
        _same(a.bars[d], b.bars[d])


@settings(max_examples=300, **SLOW)
@given(st.lists(st.integers(0, 3), max_size=60), st.lists(st.integers(-2, 200), max_size=60), st.integers(1, 7))
def test_blocks_cover_everything_and_never_cut_a_millisecond(steps, trade_times, size):
    bts = np.cumsum(np.asarray(steps, dtype=np.int64))
    tts = np.sort(np.asarray(trade_times, dtype=np.int64))
    cut = blocks(bts, tts, size)
    assert cut[0][0] == 0 and cut[0][2] == 0 and cut[-1][1] == len(bts) and cut[-1][3] == len(tts)
    for (b0, b1, t0, t1), nxt in zip(cut, cut[1:] + [None]):
        assert b0 <= b1 and t0 <= t1
        if nxt is None:
            continue
        assert nxt[0] == b1 and nxt[2] == t1 and b1 > b0                # contiguous, no empty block
        assert bts[b1 - 1] < bts[b1]                                     # cut between two milliseconds
        assert b1 - b0 <= size or bts[b0] == bts[b1 - 1]                 # longer only inside one millisecond
        assert (tts[t0:t1] <= bts[b1 - 1]).all() and (tts[t1:] > bts[b1 - 1]).all()


@settings(max_examples=200, **SLOW)
@given(market(), st.integers(1, 4))
def test_random_markets_in_tiny_blocks_equal_one_call(case, size):
    books, trades, resets, opts = case
    _blocks_equal_one_call(size, books, trades, resets=resets, **opts)


@st.composite
def delta_market(draw):
    """test_book_rebuild's faulty delta streams (gaps, stale, swapped, contradicting snapshots, bad
    levels, eviction) with exchange times -- some repeated -- and trades around them."""
    rows, max_depth = draw(stream())
    n = len(rows)
    ts = 1_723_161_255_000 + np.cumsum(draw(st.lists(st.sampled_from([0, 0, 1, 50, 250, 700]), min_size=n, max_size=n)))
    books = pa.table({"timestamp": pa.array(ts, pa.int64()),
                      "kind": pa.array([r["kind"] for r in rows], pa.string()),
                      "nonce": pa.array([r["nonce"] for r in rows], pa.int64()),
                      "prev_nonce": pa.array([r["prev_nonce"] for r in rows], pa.int64()),
                      **{k: pa.array([r[k] for r in rows], pa.list_(pa.float64()))
                         for k in ("bid_px", "bid_sz", "ask_px", "ask_sz")}})
    m = draw(st.integers(0, 30))
    tts = sorted(draw(st.lists(st.sampled_from(ts.tolist() + [int(ts[0]) - 5, int(ts[-1]) + 5]), min_size=m,
                               max_size=m)))
    trades = pa.table({"timestamp": pa.array(tts, pa.int64()),
                       "price": pa.array(draw(st.lists(st.sampled_from([99.9, 100.0, 100.1]), min_size=m, max_size=m))),
                       "amount": pa.array(draw(st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=m, max_size=m))),
                       "side": pa.array(draw(st.lists(st.sampled_from(["buy", "sell"]), min_size=m, max_size=m)))})
    opts = dict(max_levels=3, ofi_levels=3, bands_bps=[5.0, 20.0, 60.0],
                hf_emit_interval=draw(st.sampled_from([0.0, 0.5])),
                book_max_depth=max_depth if max_depth < 10**9 else 25_000)
    return books, trades, draw(st.sampled_from([None, 200, 600])), opts


@settings(max_examples=200, **SLOW)
@given(delta_market(), st.integers(1, 4))
def test_faulty_delta_streams_in_tiny_blocks_equal_one_call(case, size):
    books, trades, gap_ms, opts = case
    _blocks_equal_one_call(size, books, trades, max_gap_ms=gap_ms, **opts)


@settings(max_examples=4, **SLOW)
@given(long_market(), st.sampled_from([1, 97, 1024]))
def test_long_gappy_streams_in_blocks_equal_one_call(case, size):
    books, trades, resets, opts = case
    _blocks_equal_one_call(size, books, trades, resets=resets, **opts)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["btcusdt_20240808.gz", "ethusdt_20240808.gz"])
def test_real_capture_in_blocks_equals_one_call(shared_capture, name):
    from tests.reference.binance_capture import load

    books, trades = load(shared_capture / name, symbol=name[:3].upper() + "/USDT")
    ts = books.column("timestamp").to_pylist()
    opts = dict(hf_emit_interval=0.0, resets=[ts[len(ts) // 3]], max_gap_ms=1_000)
    whole = _blocks_equal_one_call(1000, books, trades, **opts)
    assert whole.hf.num_rows > 1000  # more than one block of rows was compared


def test_raw_arrays_kept_in_blocks_are_the_emitted_rows_own():
    """keep_raw_arrays takes each hf row's book lists by its index in the whole batch."""
    from tests.reference.synthetic import market as synthetic_market

    books, trades = synthetic_market(3000, levels=5, seed=3)
    opts = dict(keep_raw_arrays=True, hf_emit_interval=0.0)
    whole = _blocks_equal_one_call(7, books, trades, **opts)
    assert whole.hf.column("bid_px").equals(books.column("bid_px"))  # every book emitted, its own levels
