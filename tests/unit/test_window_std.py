"""Window standard deviations whose values vary by a tiny fraction of their size, against the
two-pass reference at full precision (RTOL 1e-9, no looser bound).

The kernel gets a window's std from prefix sums of values and squares (cython_ext/rolling_math.pxd
`win_std`).  Centred in plain doubles, s2 - s1^2/n kept ~16 - log10(mean^2 / variance) digits: a
depth of 1e6 that varies by a few units keeps none, and hypothesis found a slope momentum std 2e-9
off the reference.  The squares are exact and the centring is double-double now; these streams
are built so that plain doubles fail: depths ~1e6 varying by units (depth sigma), and sizes growing
steadily so the slope momentum is large against its variation (slope momentum std)."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from fluxforge.features.engine import compute
from tests.reference.stream_reference import reference

T0 = 1_723_161_600_000
RTOL = 1e-9


def _books(n: int, seed: int, growth: float) -> pa.Table:
    """Three levels a side of sizes ~1e6 varying by a few units, the bids growing by `growth` a book
    (the slope difference of the sides then grows steadily: its momentum is ~constant)."""
    rng = np.random.default_rng(seed)
    ramp = 1e6 + growth * np.arange(n)
    rows = {"timestamp": (T0 + 100 * np.arange(n)).tolist(), "nonce": list(range(n)),
            "bid_px": [], "bid_sz": [], "ask_px": [], "ask_sz": []}
    for i in range(n):
        tick = int(rng.integers(0, 2))  # the mid moves a little: returns and centre-of-gravity move
        rows["bid_px"].append([round(99.99 + 0.01 * tick - 0.01 * k, 2) for k in range(3)])
        rows["ask_px"].append([round(100.01 + 0.01 * tick + 0.01 * k, 2) for k in range(3)])
        rows["bid_sz"].append([float(ramp[i] + rng.integers(0, 5)) for _ in range(3)])
        rows["ask_sz"].append([float(1e6 + rng.integers(0, 5)) for _ in range(3)])
    return pa.table(rows)


@pytest.mark.parametrize("growth, columns", [
    (0.0, ("depth_0_5bps_sigma", "ret_std_5s")),   # a flat depth: its sigma cancels
    (2e5, ("slope_momentum_std_60s",)),  # a steady slope change: its std cancels
])
def test_window_stds_of_large_nearly_equal_values_match_the_two_pass_reference(growth, columns):
    books = _books(900, seed=7, growth=growth)
    trades = pa.table({"timestamp": pa.array([], pa.int64()), "price": pa.array([], pa.float64()),
                       "amount": pa.array([], pa.float64()), "side": pa.array([], pa.string())})
    opts = dict(hf_emit_interval=1.0, momentum_window=60.0)
    got = compute(books, trades, **opts).hf.to_pylist()
    want, _ = reference(books, trades, (), **opts)
    assert len(got) == len(want)
    compared = dict.fromkeys(columns, 0)
    for i, (g, w) in enumerate(zip(got, want)):
        for name in columns:
            a, b = g[name], w[name]
            if b is None or (isinstance(b, float) and math.isnan(b)):
                assert a is None or math.isnan(a), (i, name, a, b)
                continue
            assert abs(a - b) <= RTOL * abs(b), (i, name, a, b)
            compared[name] += b > 0.0
    assert all(count >= 20 for count in compared.values()), compared  # non-zero stds were compared
