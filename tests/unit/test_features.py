"""Feature engine: the issue's worked examples and the edge cases that must never crash."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from fluxforge.features.engine import FeatureEngine, compute, concat_results

T0 = 1_723_161_600_000  # 2024-08-09 00:00:00 UTC, a Friday


def books(rows, t0=T0, step=100):
    """rows: list of (bids, asks), each a list of (price, size); or explicit (ts, bids, asks)."""
    out = {"timestamp": [], "nonce": [], "bid_px": [], "bid_sz": [], "ask_px": [], "ask_sz": []}
    for i, row in enumerate(rows):
        ts, bids, asks = row if len(row) == 3 else (t0 + i * step, *row)
        out["timestamp"].append(ts)
        out["nonce"].append(i)
        out["bid_px"].append([p for p, _ in bids])
        out["bid_sz"].append([q for _, q in bids])
        out["ask_px"].append([p for p, _ in asks])
        out["ask_sz"].append([q for _, q in asks])
    return pa.table(out)


def trades(rows):
    """rows: (ts, price, amount, side)."""
    ts, px, amt, side = zip(*rows) if rows else ((), (), (), ())
    return pa.table({"timestamp": pa.array(ts, pa.int64()), "price": pa.array(px, pa.float64()),
                     "amount": pa.array(amt, pa.float64()), "side": pa.array(side, pa.string())})


S0 = ([(100.00, 5)], [(100.02, 4)])
S1 = ([(100.00, 8)], [(100.02, 3)])
S2 = ([(100.01, 2)], [(100.03, 6)])


def test_ofi_worked_example_cont_kukanov_stoikov():
    hf = compute(books([S0, S1, S2]), hf_emit_interval=0).hf
    ofi = hf.column("ofi_step").to_pylist()
    assert math.isnan(ofi[0])
    assert ofi[1] == pytest.approx(4.0)
    assert ofi[2] == pytest.approx(5.0)
    # one level only: the multi-level OFI (levels padded with -inf/+inf, size 0) equals level-0 OFI
    assert hf.column("mlofi_step").to_pylist()[1:] == pytest.approx([4.0, 5.0])


def test_vpin_worked_example():
    tr = trades([(T0 + 1, 100.0, 4, "buy"), (T0 + 2, 100.0, 3, "sell"), (T0 + 3, 100.0, 6, "buy"),
                 (T0 + 4, 100.0, 5, "sell"), (T0 + 5, 100.0, 12, "sell")])
    bk = books([(T0 + 4, *S0), (T0 + 10, *S1)])
    hf = compute(bk, tr, hf_emit_interval=0, vpin_bucket_volume=10, vpin_window_buckets=3).hf
    vpin = hf.column("vpin").to_pylist()
    assert math.isnan(vpin[0])          # only one bucket complete at T0+4
    assert vpin[1] == pytest.approx(0.60)


def test_trades_before_snapshot_at_equal_timestamp():
    tr = trades([(T0 + 100, 100.02, 2.0, "buy")])
    hf = compute(books([S0, S1]), tr, hf_emit_interval=0, horizons=[1.0]).hf
    # the snapshot at T0+100 already sees the trade (signed volume 2 in amihud's denominator)
    assert hf.column("amihud_like").to_pylist()[1] == pytest.approx(0.0)
    bars = compute(books([S0, S1]), tr, hf_emit_interval=0).bars[1]
    assert bars.column("buy_volume").to_pylist() == [2.0]


def test_structural_values_of_a_simple_book():
    book = books([([(99.0, 1.0), (98.0, 3.0)], [(101.0, 3.0), (102.0, 1.0)])])
    # default bands (widest 50 bps): the depth aggregates see only the best level of each side
    narrow = compute(book, hf_emit_interval=0).hf.to_pylist()[0]
    assert narrow["total_bid_volume"] == 1.0 and narrow["total_ask_volume"] == 3.0
    assert narrow["total_imbalance"] == -0.5 and narrow["bid_concentration"] == 1.0
    # a 300 bps band covers the whole book
    hf = compute(book, hf_emit_interval=0, bands_bps=[5.0, 300.0]).hf
    row = hf.to_pylist()[0]
    assert row["mid_price"] == 100.0 and row["spread"] == 2.0
    assert row["relative_spread"] == pytest.approx(0.02)
    assert row["microprice"] == pytest.approx((1 * 101 + 3 * 99) / 4)
    assert row["weighted_mid"] == pytest.approx((1 * 99 + 3 * 101) / 4)
    assert row["imbalance_L0"] == pytest.approx(-0.5)
    assert row["imbalance_L1"] == pytest.approx(0.5)
    assert row["total_imbalance"] == 0.0
    assert row["bid_concentration"] == pytest.approx(0.25 ** 2 + 0.75 ** 2)
    assert row["book_depth"] == 2 and not row["is_crossed"] and not row["is_locked"]
    assert row["bid_vol_band_0_5bps"] == 0.0  # 100 bps away: outside every band
    assert math.isnan(row["bid_price_L2"])


def test_top_level_shape_columns_of_a_worked_book():
    """Hand-computed: mid 100.05, bids 100.00..99.50 sized 1..6, asks 100.10..100.30 sized 1 each;
    level i of either side lies (i + 0.5) * 0.1 / 100.05 * 1e4 ~ 4.9975 + 9.995 i bps from mid."""
    bids = [(100.0 - 0.1 * i, float(i + 1)) for i in range(6)]
    asks = [(100.1 + 0.1 * i, 1.0) for i in range(3)]
    row = compute(books([(bids, asks)]), hf_emit_interval=0).hf.to_pylist()[0]
    assert row["imbalance_top3"] == pytest.approx((6 - 3) / 9)          # 1+2+3 vs 1+1+1
    assert row["imbalance_top5"] == pytest.approx((15 - 3) / 18)        # asks have only 3 levels
    assert row["imbalance_top10"] == pytest.approx((21 - 3) / 24)
    step = 0.1 / 100.05 * 1e4                                            # bps between levels
    assert row["bid_depth_slope"] == pytest.approx(4.0 / step)          # cumulative 1,3,6,10,15,21: +4/level
    assert row["ask_depth_slope"] == pytest.approx(1.0 / step)          # cumulative 1,2,3
    assert row["depth_slope_asymmetry"] == pytest.approx(3 / 5)
    assert row["bid_depth_decay_5"] == 5.0 and math.isnan(row["ask_depth_decay_5"])
    assert row["bid_50pct_depth_level"] == 4 and row["ask_50pct_depth_level"] == 1   # 15 >= 10.5; 2 >= 1.5
    assert row["book_convexity"] == pytest.approx(2 / 24)               # first band holds 1 + 1 of 24
    narrow = compute(books([(bids, asks)]), hf_emit_interval=0, max_levels=4, ofi_levels=2).hf.to_pylist()[0]
    assert math.isnan(narrow["imbalance_top5"]) and math.isnan(narrow["bid_depth_decay_5"])


def test_crossed_book_is_flagged_nan_and_counted():
    crossed = ([(100.05, 1.0)], [(100.00, 1.0)])
    eng = FeatureEngine(hf_emit_interval=0)
    res = concat_results([eng.process(books([S0, crossed, S1])), eng.flush()])
    row = res.hf.to_pylist()[1]
    assert row["is_crossed"] is True
    assert row["best_bid"] == 100.05 and row["best_ask"] == 100.00
    for name in ("mid_price", "spread", "microprice", "total_imbalance", "imbalance_L0", "log_return_step", "ofi_step"):
        assert math.isnan(row[name]), name
    assert eng.stats()["crossed"] == 1
    assert res.bars[1].column("crossed_count").to_pylist() == [1]
    # dynamic features skip the crossed snapshot: S1 is compared with S0
    assert res.hf.column("ofi_step").to_pylist()[2] == pytest.approx(4.0)


def test_locked_book_is_valid_and_flagged():
    row = compute(books([([(100.0, 1.0)], [(100.0, 2.0)])]), hf_emit_interval=0).hf.to_pylist()[0]
    assert row["is_locked"] is True and row["spread"] == 0.0 and row["mid_price"] == 100.0


@pytest.mark.parametrize("bids,asks", [
    ([], [(100.0, 1.0)]),                                   # empty side
    ([(99.0, 0.0)], [(100.0, 1.0)]),                        # zero size only
    ([(float("nan"), 1.0)], [(100.0, 1.0)]),                # NaN price
    ([(99.0, float("nan"))], [(100.0, float("inf"))]),      # NaN / inf sizes
    ([], []),                                               # empty book
])
def test_unusable_books_never_crash_and_give_nan(bids, asks):
    hf = compute(books([S0, (bids, asks), S1]), hf_emit_interval=0).hf
    row = hf.to_pylist()[1]
    assert math.isnan(row["mid_price"]) and math.isnan(row["microprice"]) and not row["is_crossed"]
    assert hf.column("ofi_step").to_pylist()[2] == pytest.approx(4.0)


def test_zero_size_level_is_skipped_not_fatal():
    row = compute(books([([(99.0, 0.0), (98.0, 2.0)], [(101.0, 1.0)])]), hf_emit_interval=0).hf.to_pylist()[0]
    assert row["best_bid"] == 98.0 and row["bid_levels"] == 1


def test_null_lists_and_null_timestamps():
    bk = books([S0, S1, S2]).to_pydict()
    bk["bid_px"][1] = None
    bk["bid_sz"][1] = None
    bk["timestamp"][2] = None
    eng = FeatureEngine(hf_emit_interval=0)
    hf = concat_results([eng.process(pa.table(bk)), eng.flush()]).hf
    assert hf.num_rows == 2 and math.isnan(hf.column("mid_price").to_pylist()[1])
    assert eng.stats()["null_timestamp_dropped"] == 1


def _walk(n, t0=T0, step=250):
    rng = np.random.default_rng(7)
    rows = []
    mid = 100.0
    for i in range(n):
        mid += 0.01 * rng.integers(-1, 2)
        rows.append((t0 + i * step, [(round(mid - 0.01, 2), 1.0 + rng.random())], [(round(mid + 0.01, 2), 1.0 + rng.random())]))
    return books(rows)


def test_reset_clears_state_until_warm_again():
    bk = _walk(40)                     # 10 s of books, one every 250 ms
    reset_at = T0 + 5000
    opts = dict(hf_emit_interval=0, horizons=[1.0, 2.0], momentum_window=1.0, kyle_lambda_window=2.0)
    hf = compute(bk, resets=[reset_at], **opts).hf.to_pylist()
    by_ts = {int(r["timestamp"].timestamp() * 1000): r for r in hf}
    first_after = by_ts[reset_at]
    assert math.isnan(first_after["log_return_step"]) and math.isnan(first_after["ofi_step"])
    assert math.isnan(first_after["rv_1s"]) and math.isnan(by_ts[reset_at + 750]["rv_1s"])
    assert not math.isnan(by_ts[reset_at + 1000]["rv_1s"])        # warm after 1 s again
    assert math.isnan(by_ts[reset_at + 1750]["rv_2s"]) and not math.isnan(by_ts[reset_at + 2000]["rv_2s"])
    assert not math.isnan(by_ts[reset_at + 250]["log_return_step"])
    # before the reset the same row offsets were warm
    assert not math.isnan(by_ts[reset_at - 250]["rv_1s"])
    # the result equals a fresh computation over the books after the reset (rolling/dynamic part)
    fresh = compute(bk.filter(pa.compute.greater_equal(bk.column("timestamp"), reset_at)), **opts).hf.to_pylist()
    for a, b in zip(hf[20:], fresh):
        for key in ("rv_1s", "ret_std_2s", "ofi_sum_1s", "log_return_step", "mid_accel", "kyle_lambda"):
            assert (math.isnan(a[key]) and math.isnan(b[key])) or a[key] == pytest.approx(b[key], rel=1e-12), key


def test_hf_emit_interval_takes_first_snapshot_of_each_interval():
    bk = books([(T0 + t, *S0) for t in (0, 400, 999, 1000, 1001, 2500, 2600, 4000)])
    hf = compute(bk, hf_emit_interval=1.0).hf
    assert [int(t.timestamp() * 1000) - T0 for t in hf.column("timestamp").to_pylist()] == [0, 1000, 2500, 4000]
    assert hf.column("nonce").to_pylist() == [0, 3, 5, 7]


def test_bars_half_open_empty_bars_carry_close():
    bk = books([(T0 + 0, *S0), (T0 + 999, *S1), (T0 + 1000, *S2), (T0 + 3500, *S0), (T0 + 3700, *S0)])
    eng = FeatureEngine(bar_durations=[1])
    # events from the earlier of the two streams' last times on wait for the next chunk
    streamed = eng.process(bk, trades([(T0 + 3600, 100.0, 1.0, "buy")])).bars[1]
    assert streamed.num_rows == 3  # [0,1000) [1000,2000) [2000,3000) closed; [3000,4000) still open
    rows = streamed.to_pylist()
    assert rows[0]["count"] == 2 and rows[0]["open"] == pytest.approx(100.01) and rows[0]["close"] == pytest.approx(100.01)
    assert rows[1]["open"] == pytest.approx(100.02) and rows[1]["count"] == 1
    assert rows[2]["is_empty"] and rows[2]["close"] == pytest.approx(100.02) and rows[2]["count"] == 0
    assert str(streamed.schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
    assert eng.flush().bars[1].num_rows == 1  # flush emits the open bar


def test_output_types_and_names():
    res = compute(books([S0, S1]), trades([(T0 + 50, 100.01, 1.0, "buy")]), hf_emit_interval=0)
    schema = res.hf.schema
    assert str(schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
    for name in ("rv_1s", "ret_std_5s", "mean_return_30s", "ofi_sum_60s", "mlofi_sum_1s", "tfi_5s", "trade_vol_30s",
                 "mean_spread_60s", "depth_0_5bps_sigma", "spread_regime", "spread_regime_tight_frac",
                 "spread_regime_wide_frac", "spread_percentile", "kyle_lambda", "kyle_lambda_r2", "vpin",
                 "bid_vol_band_0_5bps", "ask_vol_band_25_50bps", "imb_band_5_10bps", "hour_of_day", "day_of_week",
                 "is_weekend", "minute_of_hour", "bid_price_L9", "imbalance_L9"):
        assert name in schema.names, name
    assert schema.field("is_crossed").type == pa.bool_()
    assert res.hf.column("day_of_week").to_pylist()[0] == 4 and res.hf.column("hour_of_day").to_pylist()[0] == 0
    assert set(res.bars) == {1, 5, 30, 60}


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="lacks column"):
        compute(pa.table({"timestamp": [1]}))
    with pytest.raises(ValueError):
        FeatureEngine.from_state(b"not json", None)
    with pytest.raises(ValueError, match="different feature options"):
        FeatureEngine.from_state(FeatureEngine().get_state(), max_levels=5)
    blob = FeatureEngine().get_state()
    with pytest.raises(ValueError, match="corrupt"):
        FeatureEngine.from_state(blob.replace(b'"st": "', b'"st": "AAAA'))
    with pytest.raises(ValueError, match="corrupt"):
        FeatureEngine.from_state(blob.replace(b'"pending_books"', b'"pending_bookz"'))


def test_keep_raw_arrays_adds_the_input_lists_of_emitted_rows():
    hf = compute(books([S0, S1, S2]), hf_emit_interval=0, keep_raw_arrays=True).hf
    assert hf.column("bid_px").to_pylist() == [[100.00], [100.00], [100.01]]
    assert hf.column("ask_sz").to_pylist() == [[4], [3], [6]]


def test_late_events_are_dropped_and_counted():
    eng = FeatureEngine(hf_emit_interval=0)
    eng.process(books([S0, S1, S2]), trades([(T0 + 500, 100.0, 1.0, "buy")]))
    eng.process(books([(T0 + 50, *S0)]))           # older than what was processed: late
    assert eng.stats()["late_dropped"] == 1


def test_unsorted_input_is_sorted_and_reset_in_a_later_chunk_is_kept():
    rows = [(T0 + 200, *S2), (T0, *S0), (T0 + 100, *S1)]
    hf = compute(books(rows), hf_emit_interval=0).hf
    assert hf.column("ofi_step").to_pylist()[1:] == pytest.approx([4.0, 5.0])
    eng = FeatureEngine(hf_emit_interval=0)
    first = eng.process(books([S0]), resets=[T0 + 150])           # the reset lies ahead: kept
    rest = eng.process(books([(T0 + 100, *S1), (T0 + 200, *S2), (T0 + 300, *S0)]))
    ofi = concat_results([first, rest, eng.flush()]).hf.column("ofi_step").to_pylist()
    assert ofi[1] == pytest.approx(4.0) and math.isnan(ofi[2])    # reset before S2 at T0+200
