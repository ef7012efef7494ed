"""VPIN per-trade cost: trades spanning ~1e9 volume buckets against ordinary trades, same run.

Why this ratio: before issue 17 the VPIN kernel looped once per bucket, so one
trade of 1e10 units (an ordinary meme-coin trade with the default bucket of 10)
cost ~1e9 iterations (seconds); the baseline here is the same engine on trades
that stay inside one bucket.  O(1) per trade means the ratio stays near 1.
Times are CPU seconds of this process (time.process_time).

    python bench/vpin.py                 # 20,000 trades per kind
    python bench/vpin.py --trades 2000 --huge 1e10
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from fluxforge.features.engine import compute  # noqa: E402

T0 = 1_723_161_600_000


def per_trade_ns(n: int, amount: float, repeat: int) -> float:
    """CPU ns per trade for `n` alternating-side trades of `amount` (one book at the end), best of `repeat`."""
    ts = T0 + np.arange(n, dtype=np.int64)
    trades = pa.table({"timestamp": ts, "price": np.full(n, 100.0), "amount": np.full(n, amount),
                       "side": pa.array(["buy", "sell"] * (n // 2) + ["buy"] * (n % 2), pa.string())})
    books = pa.table({"timestamp": [int(ts[-1]) + 1], "nonce": [0], "bid_px": [[99.99]], "bid_sz": [[1.0]],
                      "ask_px": [[100.01]], "ask_sz": [[1.0]]})
    best = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        compute(books, trades, hf_emit_interval=0, vpin_bucket_volume=10, vpin_window_buckets=50)
        best = min(best, time.process_time() - c0)
    return best / n * 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=20_000)
    ap.add_argument("--huge", type=float, default=1e10, help="units per huge trade (default 1e10)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    base = per_trade_ns(args.trades, 0.37, args.repeat)
    huge = per_trade_ns(args.trades, args.huge, args.repeat)
    print(f"ordinary trade (0.37 units, bucket 10): {base:10.1f} ns/trade  (baseline)")
    print(f"huge trade ({args.huge:.0e} units, {args.huge / 10:.0e} buckets): {huge:10.1f} ns/trade")
    print(f"ratio huge/ordinary: {huge / base:.2f}x   (per-bucket loop before issue 17: ~1e9 iterations per trade)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
