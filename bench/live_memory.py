"""What the live path holds over a long segment: memory, and the CPU of a flush late against early.

Why: the live ETL keeps the active segment's output rows until the segment job writes them
(SegmentFeeder) and the last `etl.live.replay_minutes` of published rows (the hub's ring).
Held as a table per symbol, product and flush, they grew the ETL by ~4.5 MB/s at 20 symbols
and, as thousands of Arrow objects piled up, made every later flush slower (features/
table_blocks.py).  This feeds SYMBOLS synthetic symbols (books 10/s at depth 20, 5 trades/s)
flush by flush through the live path's own code -- SegmentFeeder, live_products, the hub's ring --
for MINUTES of one segment, in one process, and prints per window the CPU of the flushes,
the tables held, the bytes of the feeder's outputs in memory and in its spill file (the
live path's: table_blocks.Spill), the ring's and the resident memory (which includes the synthetic
market, made up front); then the CPU of the last window against the second (1.0: a flush
costs the same late in a segment as early; the first window warms up).

Run: .venv/bin/python bench/live_memory.py [--minutes 30] [--symbols 20] [--window 5]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from etl_support import synthetic_market  # noqa: E402
from live_support import flushes  # noqa: E402

from fluxforge.config import FeatureOptions, TradeOptions  # noqa: E402
from fluxforge.etl.engines import EngineBank  # noqa: E402
from fluxforge.etl.live_rows import live_products  # noqa: E402
from fluxforge.etl.segment_feed import SegmentFeeder, pieces, products  # noqa: E402
from fluxforge.features import table_blocks  # noqa: E402
from fluxforge.live.hub import LiveHub  # noqa: E402
from fluxforge.live.settings import LiveConfig  # noqa: E402


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2 ** 20


def _in_memory_mb(feeder: SegmentFeeder) -> float:
    held = [t for o in feeder._held.values() for _, ts in products(o) for t in ts]
    return sum(table_blocks.held_bytes(t) for t in held) / 2 ** 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--window", type=float, default=5.0, help="minutes per printed line")
    ap.add_argument("--flush", type=float, default=1.0, help="collector.flush_interval (s)")
    args = ap.parse_args()
    seconds = args.minutes * 60
    market = synthetic_market(symbols=tuple(f"S{i}/USDT" for i in range(args.symbols)), seconds=seconds,
                              hz=10.0, trades_per_s=5.0)
    spill_dir = tempfile.TemporaryDirectory(prefix="ff-bench-spill-")
    feeder = SegmentFeeder(EngineBank(FeatureOptions(), reorder_ms=5000, trade_options=TradeOptions()), "bench",
                           spill=table_blocks.Spill(spill_dir.name))
    live = LiveConfig()
    hub = LiveHub(live, Path(spill_dir.name))  # not started: publish() runs on this thread
    ring = hub.ring
    per_window = round(args.window * 60 / args.flush)
    print(f"{args.symbols} symbols, {args.flush:g} s flushes, {args.minutes:g} min of one segment; ring "
          f"{live.replay_minutes:g} min / {live.replay_rows} rows / {live.replay_mb:g} MB")
    print(f"{'minute':>7} {'cpu s':>6} {'held tables':>12} {'held MB':>8} {'spilled MB':>11} {'ring tables':>12}"
          f" {'ring MB':>8} {'rss MB':>7}")
    windows, cpu = [], 0.0
    for i, (_, rows) in enumerate(flushes(market, int(args.flush * 1e9))):
        t0 = time.process_time()
        out = feeder.feed_chunk(pieces(rows["orderbook"], 16384), rows["trades"], rows["events"])
        for product, table, _ in live_products({(k, p): t for k, o in out.items() for p, t in products(o)}):
            hub.publish(product, table)
        cpu += time.process_time() - t0
        if (i + 1) % per_window == 0:
            windows.append(cpu)
            held = sum(len(t) for o in feeder._held.values() for _, t in products(o))
            in_ring = sum(len(s.tables) for s in ring._stores.values())
            print(f"{(i + 1) * args.flush / 60:>7.0f} {cpu:>6.2f} {held:>12} {_in_memory_mb(feeder):>8.1f}"
                  f" {feeder.spill.size / 2 ** 20:>11.1f} {in_ring:>12} {ring.bytes / 2 ** 20:>8.1f} {_rss_mb():>7.0f}",
                  flush=True)
            cpu = 0.0
    if len(windows) > 2:  # the first window warms up (imports, first books): the second is the baseline
        print(f"last window / second: {windows[-1] / windows[1]:.2f}x the CPU per flush")


if __name__ == "__main__":
    main()
