"""VPIN costs O(1) per trade: a trade spanning billions of buckets does bounded work, exactly.

Issue 17 item 3: the kernel used to loop once per bucket (a 1e10-unit trade with
the default bucket of 10 took seconds, and above ~9.2e10 units the int64
conversion overflowed and the trade silently vanished).  The work counter
(`vpin_work`, buckets written to the ring) is the cost measure, not wall time.
"""
from __future__ import annotations

import math
import random

import pyarrow as pa
import pytest

from fluxforge.features.engine import compute
from tests.reference.stream_reference import reference

T0 = 1_723_161_600_000
BOOK = ([(100.00, 5.0)], [(100.02, 4.0)])


def _books(n, step=100):
    ts = [T0 + i * step for i in range(n)]
    return pa.table({"timestamp": ts, "nonce": list(range(n)),
                     "bid_px": [[BOOK[0][0][0]]] * n, "bid_sz": [[BOOK[0][0][1]]] * n,
                     "ask_px": [[BOOK[1][0][0]]] * n, "ask_sz": [[BOOK[1][0][1]]] * n})


def _trades(rows):
    ts, amt, side = zip(*rows)
    return pa.table({"timestamp": pa.array(ts, pa.int64()), "price": pa.array([100.01] * len(ts), pa.float64()),
                     "amount": pa.array(amt, pa.float64()), "side": pa.array(side, pa.string())})


def test_huge_trade_does_bounded_work_and_counts():
    window = 50
    res = compute(_books(3), _trades([(T0 + 50, 1e12, "buy"), (T0 + 150, 3.0, "sell")]),
                  hf_emit_interval=0, vpin_bucket_volume=10, vpin_window_buckets=window)
    vpin = res.hf.column("vpin").to_pylist()
    assert math.isnan(vpin[0])
    assert vpin[1] == 1.0                      # every bucket in the window is one-sided
    assert vpin[2] == 1.0                      # a small trade after it opens a new bucket only
    # 1e11 buckets were completed; at most the window (+ the one that was open) was written
    assert res.stats["vpin_work"] <= window + 1
    assert res.stats["trades_invalid"] == 0


@pytest.mark.parametrize("seed", range(20))
def test_bucket_spanning_trades_match_the_per_bucket_reference(seed):
    """Trades from a fraction of a bucket to a few windows' worth, against the reference's per-bucket loop."""
    rng = random.Random(seed)
    n = 40
    rows = []
    for i in range(n):
        scale = rng.choice([0.3, 1.0, 7.0, 40.0, 300.0])     # in buckets: open only, k < n, k >= n
        rows.append((T0 + i * 100 + 50, round(rng.uniform(0.01, 1.0) * scale * 2.5, 8),
                     rng.choice(["buy", "sell"])))
    opts = dict(hf_emit_interval=0.0, vpin_bucket_volume=2.5, vpin_window_buckets=rng.choice([1, 3, 20]))
    books, trades = _books(n), _trades(rows)
    got = compute(books, trades, **opts).hf.column("vpin").to_pylist()
    ref_hf, _ = reference(books, trades, [], **opts)
    want = [r["vpin"] for r in ref_hf]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert (math.isnan(g) and math.isnan(w)) or g == pytest.approx(w, rel=1e-12)


def test_invalid_trades_are_skipped_and_counted():
    rows = [(T0 + 50, float("nan"), "buy"), (T0 + 60, float("inf"), "sell"), (T0 + 70, -4.0, "buy"),
            (T0 + 80, 25.0, "buy")]
    res = compute(_books(2), _trades(rows), hf_emit_interval=0, vpin_bucket_volume=10, vpin_window_buckets=2)
    assert res.stats["trades_invalid"] == 3
    assert res.hf.column("vpin").to_pylist()[1] == 1.0   # only the 25-unit buy counted: 2 full buckets
