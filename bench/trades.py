"""Trade-bar kernel speed: Cython TradeBarEngine / InfoBarEngine against NumPy trade bars, same run.

A busy synthetic trade stream (default 5,000,000 trades, ~20 per second of exchange time,
ties, unknown sides) is turned into 1 s and 60 s time bars by the kernel and by a
vectorised NumPy implementation (np.unique + ufunc.reduceat, the fastest plain spelling);
both must agree on OHLCV.  Volume and dollar bars run on the same stream.  Times are CPU
seconds of this process (time.process_time).  Target: >= 2,000,000 trades/s per bar kernel.

    python bench/trades.py
    python bench/trades.py --trades 1000000
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from fluxforge._kernels.trade_bars import InfoBarEngine, TradeBarEngine  # noqa: E402

TARGET = 2_000_000.0


def stream(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ts = 1_723_075_200_000 + np.cumsum(rng.choice([0, 0, 1, 20, 50, 100], size=n))
    px = 60_000.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-5, size=n)))
    amt = rng.exponential(0.05, size=n) + 1e-5
    side = rng.choice(np.array([1, -1, 0], dtype=np.int8), size=n, p=[0.49, 0.49, 0.02])
    return ts.astype(np.int64), px, amt, side


def numpy_bars(ts, px, amt, side, dms):
    """OHLCV + buy/sell volume per non-empty bar with NumPy (no empty bars, no returns)."""
    k = ts // dms
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    ends = np.r_[starts[1:], len(k)] - 1
    return dict(timestamp=k[starts] * dms, open=px[starts], close=px[ends],
                high=np.maximum.reduceat(px, starts), low=np.minimum.reduceat(px, starts),
                volume=np.add.reduceat(amt, starts), dollar_volume=np.add.reduceat(px * amt, starts),
                buy_volume=np.add.reduceat(np.where(side > 0, amt, 0.0), starts),
                trade_count=np.diff(np.r_[starts, len(k)]))


def cpu(fn):
    c0 = time.process_time()
    out = fn()
    return out, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=5_000_000)
    args = ap.parse_args()
    ts, px, amt, side = stream(args.trades)
    none = np.zeros(0, dtype=np.int64)
    print(f"{args.trades:,} trades, {(ts[-1] - ts[0]) / 1000:,.0f} s of exchange time")
    ok = True
    for d in (1, 60):
        kernel = TradeBarEngine([d * 1000])
        (bars,), t_k = cpu(lambda: kernel.process(ts, px, amt, side, none, int(ts[-1]) + d * 1000))
        ref, t_np = cpu(lambda: numpy_bars(ts, px, amt, side, d * 1000))
        full = bars[bars[:, 17] == 0.0]
        same = (len(full) == len(ref["open"]) and np.array_equal(full[:, 0], ref["timestamp"])
                and all(np.allclose(full[:, i], ref[c], rtol=1e-9, atol=0)
                        for i, c in ((1, "open"), (2, "high"), (3, "low"), (4, "close"), (5, "volume"),
                                     (6, "dollar_volume"), (9, "buy_volume"))))
        rate = args.trades / t_k
        ok &= same and rate >= TARGET
        print(f"time bars {d:>2} s: kernel {rate:>13,.0f} trades/s ({t_k:.3f} s, {len(bars):,} bars incl. empty, "
              f"all 19 columns) | numpy {args.trades / t_np:>13,.0f} trades/s (9 columns, no empty bars) | "
              f"kernel/numpy {t_np / t_k:.2f}x | same OHLCV: {same}")
    for name, size, dollar in (("volume bars", 5.0, False), ("dollar bars", 1_000_000.0, True)):
        kernel = InfoBarEngine(size, dollar)
        bars, t_k = cpu(lambda: kernel.process(ts, px, amt, side, none))
        rate = args.trades / t_k
        ok &= rate >= TARGET
        print(f"{name}: kernel {rate:>13,.0f} trades/s ({t_k:.3f} s, {len(bars):,} bars)")
    print(f"target >= {TARGET:,.0f} trades/s per bar kernel: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
