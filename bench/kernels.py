"""Feature kernel speed: Cython batch and streaming paths against the NumPy and pure-Python references.

All four run in this process on the same synthetic market (N-level books every
0-200 ms, ~0.5 trades per book) with default FeatureOptions.  Times are CPU
seconds of this process (time.process_time, Arrow limited to one thread), so a
busy shared machine disturbs them less than wall time; wall time is printed too.
The slow references run on the first --ref-snapshots books (they recompute every
window from scratch) and are scaled per snapshot; the output says so.

    python bench/kernels.py                  # 1,000,000 snapshots, 3 interleaved rounds (a few minutes at most)
    python bench/kernels.py --snapshots 100000
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from fluxforge.features import engine as feature_engine  # noqa: E402
from fluxforge.features.engine import FeatureEngine, compute, concat_results  # noqa: E402
from tests.reference.stream_reference import reference  # noqa: E402
from tests.reference.synthetic import market  # noqa: E402

TARGET_NS = 500.0
TARGET_RATIO = 50.0


def timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def identical(a: pa.Table, b: pa.Table) -> bool:
    """Same schema and values, NaN equal to NaN (Table.equals treats NaN != NaN)."""
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return False
    for name in a.column_names:
        x = a.column(name).to_numpy(zero_copy_only=False)
        y = b.column(name).to_numpy(zero_copy_only=False)
        if x.dtype.kind == "f":
            if not np.array_equal(x, y, equal_nan=True):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


def same_rows(a, b) -> bool:
    """Two FeatureResults with identical hf rows and bars."""
    return identical(a.hf, b.hf) and all(identical(a.bars[d], b.bars[d]) for d in a.bars)


def streamed(books: pa.Table, trades: pa.Table, chunk: int):
    """Feed the engine time-cut chunks of `chunk` books, as the ETL feeds segments."""
    engine = FeatureEngine()
    bts = books.column("timestamp").to_numpy()
    tts = trades.column("timestamp").to_numpy()
    parts, start_t = [], 0
    for start in range(0, len(bts), chunk):
        stop = min(start + chunk, len(bts))
        stop_t = len(tts) if stop == len(bts) else int(np.searchsorted(tts, bts[stop], side="left"))
        parts.append(engine.process(books.slice(start, stop - start), trades.slice(start_t, stop_t - start_t)))
        start_t = stop_t
    parts.append(engine.flush())
    return concat_results(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snapshots", type=int, default=1_000_000)
    ap.add_argument("--levels", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=10_000, help="books per streaming chunk")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved runs of each Cython path (the minimum counts)")
    ap.add_argument("--ref-snapshots", type=int, default=5_000, help="books given to the slow references")
    args = ap.parse_args(argv)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    n = args.snapshots
    print(f"generating {n:,} synthetic snapshots x {args.levels} levels + trades ...", flush=True)
    books, trades = market(n, levels=args.levels, seed=42)
    print(f"  {trades.num_rows:,} trades; default FeatureOptions (hf_emit_interval=1 s)")

    compute(books.slice(0, 2000), trades.slice(0, 1000))          # warm-up (imports)
    # Interleaved rounds, the minimum of each: the first full-size call pays the page faults of
    # its fresh output arrays, which made whichever path ran first look slower.  The engine feeds
    # the kernels BLOCK_BOOKS at a time (features/book_blocks.py); the batch is also timed as one
    # block, as it ran before: every call then rebuilt 640 MB of levels into fresh memory.
    c_batch = w_batch = c_stream = w_stream = c_whole = w_whole = float("inf")
    for _ in range(args.rounds):
        batch, c, w = timed(lambda: compute(books, trades))
        c_batch, w_batch = min(c_batch, c), min(w_batch, w)
        blocks, feature_engine.BLOCK_BOOKS = feature_engine.BLOCK_BOOKS, 1 << 62
        try:
            whole, c, w = timed(lambda: compute(books, trades))
        finally:
            feature_engine.BLOCK_BOOKS = blocks
        c_whole, w_whole = min(c_whole, c), min(w_whole, w)
        stream, c, w = timed(lambda: streamed(books, trades, args.chunk))
        c_stream, w_stream = min(c_stream, c), min(w_stream, w)
    same = same_rows(batch, stream) and same_rows(batch, whole)

    m = min(args.ref_snapshots, n)
    sub_b = books.slice(0, m)
    sub_t = trades.filter(pa.compute.less_equal(trades.column("timestamp"), sub_b.column("timestamp")[m - 1]))
    _, c_np, w_np = timed(lambda: reference(sub_b, sub_t, mode="numpy"))
    _, c_py, w_py = timed(lambda: reference(sub_b, sub_t, mode="python"))
    _, c_small, _ = timed(lambda: compute(sub_b, sub_t))

    def ns(cpu, count):
        return cpu / count * 1e9

    rows = [
        ("Cython batch   compute()", n, c_batch, w_batch),
        ("Cython batch   as one block", n, c_whole, w_whole),
        (f"Cython stream  {args.chunk:,}-book chunks", n, c_stream, w_stream),
        ("NumPy reference", m, c_np, w_np),
        ("pure-Python reference", m, c_py, w_py),
    ]
    print(f"\n{'path':40s} {'snapshots':>10s} {'ns/snapshot (CPU)':>18s} {'ns/snapshot (wall)':>19s}")
    for name, count, cpu, wall in rows:
        print(f"{name:40s} {count:>10,} {ns(cpu, count):>18,.0f} {ns(wall, count):>19,.0f}")
    print(f"(references ran on the first {m:,} snapshots only and are scaled per snapshot; "
          f"Cython batch on that same subset: {ns(c_small, m):,.0f} ns/snapshot)")
    b = ns(c_batch, n)
    print(f"\nhf rows {batch.hf.num_rows:,} x {batch.hf.num_columns} columns; bars "
          + ", ".join(f"{d}s: {t.num_rows:,}" for d, t in batch.bars.items()))
    print(f"streaming == one block == batch (hf and bars identical): {same}")
    print(f"ratio streaming / batch        : {ns(c_stream, n) / b:8.2f}x")
    print(f"ratio one block / batch        : {ns(c_whole, n) / b:8.2f}x")
    print(f"ratio NumPy reference / batch  : {ns(c_np, m) / b:8.1f}x")
    print(f"ratio pure-Python ref / batch  : {ns(c_py, m) / b:8.1f}x")
    ok_ns, ok_ratio = b <= TARGET_NS, ns(c_py, m) / b >= TARGET_RATIO
    print(f"target batch <= {TARGET_NS:.0f} ns/snapshot: {'met' if ok_ns else 'NOT met'} ({b:,.0f} ns); "
          f">= {TARGET_RATIO:.0f}x faster than pure Python: {'met' if ok_ratio else 'NOT met'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
