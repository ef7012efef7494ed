"""A long history on a box left on a shelf: what compaction's daily run and `fluxforge status` cost.

Why: the timer runs `fluxforge compact` every day over every closed partition of the feature
tree, and a box left on a shelf keeps a year or more of them (20 symbols x 9 product trees =
180 partitions a day). Each is already one merged file; the run must still look at it.  It
used to read one or two Parquet footers per partition (17 s of CPU for a year here, and on a
Pi, with a cold SD card, minutes a day, growing with every day kept); a partition of fewer
than two parts is now passed over from its directory listing.  `fluxforge status` counts the
feature files and bytes of every tree (one stat a file now, two before).

Data: DAYS days x TREES x SYMBOLS partitions, each holding one merged file (a real Parquet
file with a `fluxforge.compaction` footer), as compaction leaves them.
Measured (process CPU, min of ROUNDS), each against a baseline in the same run: a bare
`os.walk` of the same tree that lists every file (the least any scan must do):
  compact(cfg)        a real run: recovery checks and the plan of every closed partition, no merge
  feature_summary()   status's count of the feature files, their bytes and the newest
Run: .venv/bin/python bench/long_history.py [--days 365] [--symbols 20] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fluxforge.config import parse_config  # noqa: E402
from fluxforge.logs import configure_logging  # noqa: E402
from fluxforge.maintenance.compaction import META_KEY, compact  # noqa: E402
from fluxforge.observe.status import feature_summary  # noqa: E402

TREES = ("hf", "bars/interval=5s", "bars/interval=60s", "bars/interval=300s", "trade_bars/interval=60s",
         "volume_bars", "dollar_bars", "trades", "ticker")
FIRST_DAY = date(2025, 1, 1)


def make_history(features: Path, days: int, symbols: int) -> int:
    """One merged file per partition (its footer names the 24 hourly parts it covers)."""
    table = pa.table({"timestamp": pa.array(range(1000), pa.int64()), "x": pa.array([1.0] * 1000)})
    features.mkdir(parents=True)
    sample = features.parent / "sample.parquet"
    n = 0
    for k in range(days):
        day = FIRST_DAY + timedelta(days=k)
        compact_day = day.strftime("%Y%m%d")
        covers = [f"part-seg-pi01-{compact_day}T{h:02d}0000Z-{k * 24 + h:06d}.parquet" for h in range(24)]
        meta = {META_KEY.decode(): json.dumps({"covers": covers, "rows": 1000})}
        pq.write_table(table.replace_schema_metadata(meta), sample)
        data = sample.read_bytes()
        name = f"part-{covers[0][5:-8]}--{covers[-1][5:-8]}.parquet"
        for tree in TREES:
            for s in range(symbols):
                partition = features / tree / "exchange=binance" / f"symbol=S{s}-USDT" / f"date={day.isoformat()}"
                partition.mkdir(parents=True)
                (partition / name).write_bytes(data)
                n += 1
    return n


def walk(features: Path) -> int:
    return sum(len(files) for _dir, _dirs, files in os.walk(features))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    configure_logging("WARNING", "console", "bench")
    tmp = Path(tempfile.mkdtemp(prefix="ff-bench-compact-history-"))
    try:
        cfg = parse_config({"data_dir": str(tmp / "data"), "host_id": "pi01"})
        files = make_history(cfg.features_dir, args.days, args.symbols)
        today = FIRST_DAY + timedelta(days=args.days + 2)
        base, run, status = [], [], []
        for _ in range(args.rounds):
            t = time.process_time()
            assert walk(cfg.features_dir) == files
            base.append(time.process_time() - t)
            t = time.process_time()
            report = compact(cfg, today=today)
            run.append(time.process_time() - t)
            t = time.process_time()
            summary = feature_summary(cfg.features_dir)
            status.append(time.process_time() - t)
            if sum(v["files"] for v in summary.values()) != files:
                raise RuntimeError(f"status counted other files than the {files} made: {summary}")
            if report.partitions != files or report.groups or getattr(report, "unreadable", None) \
                    or getattr(report, "failed", None):  # (getattr: the bench also runs on older commits)
                raise RuntimeError(f"expected {files} partitions and nothing to do: {report}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    a, b, c = min(base), min(run), min(status)
    print(f"a long history: {args.days} days x {len(TREES)} trees x {args.symbols} symbols = "
          f"{files} compacted partitions; min of {args.rounds}")
    print(f"os.walk listing every file {a:.2f} s   compact() with nothing to merge {b:.2f} s   ratio {b / a:.1f}   "
          f"{b / files * 1e6:.0f} us per partition")
    print(f"status feature_summary() {c:.2f} s   ratio {c / a:.1f}")


if __name__ == "__main__":
    main()
