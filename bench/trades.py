"""Trade-bar kernel speed: Cython TradeBarEngine / InfoBarEngine against NumPy trade bars, same run.

A busy synthetic trade stream (default 5,000,000 trades, ~20 per second of exchange time,
ties, unknown sides) is turned into 1 s and 60 s time bars by the kernel and by a
vectorised NumPy implementation (np.unique + ufunc.reduceat, the fastest plain spelling);
both must agree on OHLCV.  Volume and dollar bars run on the same stream, and so does the
per-trade kernel (features/trades/, every row with 5/60/300 s windows) against NumPy
cumulative-sum windows (volume and VWAP only) as its baseline; no target, a figure.  Times are CPU
seconds of this process (time.process_time).  Target: >= 2,000,000 trades/s per bar kernel.

Then the whole ETL (bench/etl.py's 10-symbol segment, --etl-books snapshots per symbol)
with the default trade products against the same ETL with them switched off
(bar_durations [], dollar_bar_size 0), same run, best of --etl-reps interleaved pairs; target: at most 20% slower.

    python bench/trades.py
    python bench/trades.py --trades 1000000 --etl-books 10000
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from fluxforge._kernels.trade_bars import InfoBarEngine, TradeBarEngine  # noqa: E402
from fluxforge._kernels.trade_features import TradeFeatureEngine  # noqa: E402

TARGET = 2_000_000.0
PER_TRADE_CHUNK = 65_536


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


def etl_cpu(per_symbol: int, reps: int = 3) -> tuple[list[float], list[float], int]:
    """CPU seconds of EtlRunner.run_once on one segment, trade products off and on, `reps` interleaved pairs
    (a shared machine's load comes and goes: the best of each side, and every pair's ratio, are printed)."""
    import importlib.util
    import shutil
    import tempfile

    import pyarrow as pa

    from fluxforge.bronze.segments import SegmentStore
    from fluxforge.config import FeatureOptions, TradeOptions
    from fluxforge.etl.runner import EtlRunner

    spec = importlib.util.spec_from_file_location("bench_etl", Path(__file__).with_name("etl.py"))
    etl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(etl)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        seg = etl.build_segment(SegmentStore(tmp / "src").ensure(), "bench", etl.market(per_symbol), when=etl.T0, seq=1)
        times: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(reps):
            for name, opts in (("off", TradeOptions(bar_durations=[], dollar_bar_size=0.0)), ("on", TradeOptions())):
                root = tmp / f"{name}{i}"
                shutil.copytree(seg, root / "segments/ready" / seg.name)
                runner = EtlRunner(root / "segments", root / "features", root / "state", FeatureOptions(),
                                   trade_options=opts)
                c0 = time.process_time()
                [outcome] = runner.run_once()
                times[name].append(time.process_time() - c0)
                assert outcome.state == "done", outcome.reason
                shutil.rmtree(root)
    return times["off"], times["on"], per_symbol * len(etl.SYMBOLS)


def numpy_windows(ts, px, amt, horizons_ms):
    """Per-trade rolling volume and VWAP with NumPy: cumulative sums + searchsorted (no resets)."""
    cv = np.concatenate(([0.0], np.cumsum(amt)))
    cd = np.concatenate(([0.0], np.cumsum(px * amt)))
    end = np.arange(1, len(ts) + 1)
    out = []
    for h in horizons_ms:
        start = np.searchsorted(ts, ts - h, side="right")
        vol = cv[end] - cv[start]
        out.append((vol, (cd[end] - cd[start]) / vol))
    return out


def per_trade(ts, px, amt, side, none, n: int) -> None:
    """The per-trade kernel (features/trades/, default horizons 5, 60, 300 s: 27 computed columns)
    against NumPy's cumulative-sum windows (volume and VWAP only, plain doubles), same stream."""
    horizons = [5_000, 60_000, 300_000]
    checked = [c for k in range(len(horizons)) for c in (6 + 7 * k, 7 + 7 * k)]  # vwap_{h}s, volume_{h}s

    def run(keep: bool) -> list[np.ndarray]:
        # chunks of PER_TRADE_CHUNK trades, as the ETL feeds a symbol (per book batch), each block
        # dropped once used, as the ETL does: keeping a 27-column float64 block of millions of
        # trades would measure the page faults of fresh memory, not the kernel
        kernel, kept = TradeFeatureEngine(horizons), []
        for i in range(0, n, PER_TRADE_CHUNK):
            block, _index = kernel.process(ts[i:i + PER_TRADE_CHUNK], px[i:i + PER_TRADE_CHUNK],
                                           amt[i:i + PER_TRADE_CHUNK], side[i:i + PER_TRADE_CHUNK], none)
            if keep:
                kept.append(block[:, checked])
        return kept

    _, t_k = cpu(lambda: run(False))
    got = np.concatenate(run(True))
    ref, t_np = cpu(lambda: numpy_windows(ts, px, amt, horizons))
    same = all(np.allclose(got[:, 2 * k + 1], vol, rtol=1e-6) and np.allclose(got[:, 2 * k], vwap, rtol=1e-9)
               for k, (vol, vwap) in enumerate(ref))
    print(f"per-trade features (5/60/300 s, chunks of {PER_TRADE_CHUNK:,}): kernel {n / t_k:>13,.0f} trades/s "
          f"({t_k:.3f} s, {6 + 7 * len(horizons)} columns) | numpy {n / t_np:>13,.0f} trades/s (volume + vwap only) | "
          f"kernel/numpy {t_np / t_k:.2f}x | same volume/vwap: {same}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=5_000_000)
    ap.add_argument("--etl-books", type=int, default=30_000, help="book snapshots per symbol for the ETL run")
    ap.add_argument("--etl-reps", type=int, default=3, help="interleaved off/on pairs of the ETL run (best of each)")
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
    per_trade(ts, px, amt, side, none, args.trades)
    offs, ons, books = etl_cpu(args.etl_books, args.etl_reps)
    off, on = min(offs), min(ons)
    slower = on / off - 1.0
    ok &= slower <= 0.20
    ratios = [b / a - 1 for a, b in zip(offs, ons)]
    pairs = ", ".join(f"{100 * r:+.0f}%" for r in ratios) + f" (median {100 * float(np.median(ratios)):+.1f}%)"
    print(f"whole ETL, {books:,} snapshots + {books // 4:,} trades: trade products off {off:.3f} CPU-s, "
          f"on (defaults) {on:.3f} CPU-s (best of {len(ons)} each) -> {100 * slower:+.1f}% (target <= +20%); "
          f"pairs: {pairs}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
