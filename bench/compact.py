"""Compaction throughput and file-count reduction on one day of 1-second hf rows.

Data: one symbol, one UTC day at 1 row/s (86,400 rows) split into 288 parts (5-minute
segments), with the real hf column set of the default FeatureOptions (fluxforge.features.layout).
Measured: `fluxforge.maintenance.compaction.compact` rows/s (streaming merge + read-back digest
verification + fsync + journal), and the file-count reduction; baseline in the same run:
a naive unverified merge of a copy of the same tree (read every part, concat, write once).
Run: .venv/bin/python bench/compact.py   (make bench)
"""
from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fluxforge.maintenance.compaction import compact  # noqa: E402
from fluxforge.config import FeatureOptions, parse_config  # noqa: E402
from fluxforge.features.layout import hf_names  # noqa: E402
from fluxforge.logs import configure_logging  # noqa: E402
from fluxforge.bronze.segments import SegmentId  # noqa: E402

DAY = datetime(2024, 8, 8, tzinfo=timezone.utc)
PARTS, ROWS = 288, 300


def make_day(features: Path) -> Path:
    names = hf_names(FeatureOptions())
    rng = np.random.default_rng(1)
    part_dir = features / "hf" / "exchange=binance" / "symbol=BTC-USDT" / f"date={DAY.date()}"
    part_dir.mkdir(parents=True)
    mid = 60_000 + np.cumsum(rng.normal(0, 1, PARTS * ROWS))
    for i in range(PARTS):
        start = DAY + timedelta(seconds=i * ROWS)
        sl = slice(i * ROWS, (i + 1) * ROWS)
        cols = {"timestamp": pa.array((int(start.timestamp()) + np.arange(ROWS)) * 1000, pa.timestamp("ms", tz="UTC")),
                "nonce": pa.array(np.arange(ROWS, dtype=np.int64) + i * ROWS)}
        for j, n in enumerate(names[2:]):
            cols[n] = mid[sl] * (1 + j * 1e-4) + rng.normal(0, 0.01, ROWS)
        pq.write_table(pa.table(cols), part_dir / f"part-{SegmentId.new('bench', i + 1, start).name}.parquet",
                       compression="zstd")
    return part_dir


def naive_merge(part_dir: Path) -> None:
    parts = sorted(part_dir.glob("part-*.parquet"))
    table = pa.concat_tables(pq.read_table(p) for p in parts)
    pq.write_table(table, part_dir / "merged.parquet", compression="zstd", row_group_size=65536)
    for p in parts:
        p.unlink()


def main() -> None:
    configure_logging("WARNING", "json")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        part_dir = make_day(data / "features")
        copy = Path(tmp) / "copy"
        shutil.copytree(data / "features", copy)
        mb = sum(p.stat().st_size for p in part_dir.iterdir()) / 1e6
        files_before = len(list(part_dir.iterdir()))

        cfg = parse_config({"data_dir": str(data), "host_id": "bench"})
        t = time.perf_counter()
        report = compact(cfg, today=date(2024, 8, 10))
        ours = time.perf_counter() - t
        files_after = len(list(part_dir.glob("part-*.parquet")))
        assert report.rows == PARTS * ROWS
        rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        t = time.perf_counter()
        naive_merge(next(copy.rglob("date=*")))
        base = time.perf_counter() - t
        print(f"one day of 1 s hf rows: {PARTS * ROWS:,} rows x {len(hf_names(FeatureOptions()))} columns, "
              f"{files_before} parts, {mb:.1f} MB; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"baseline  naive read-all/concat/write (unverified): {PARTS * ROWS / base:10,.0f} rows/s ({base:.2f} s)")
        print(f"fluxforge compact (streamed, digest-verified)     : {PARTS * ROWS / ours:10,.0f} rows/s ({ours:.2f} s)")
        print(f"ratio compact/baseline: {base / ours:.2f}x; files {files_before} -> {files_after} "
              f"({files_before / max(files_after, 1):.0f}x fewer), {report.bytes_in / 1e6:.1f} MB -> {report.bytes_out / 1e6:.1f} MB")
        print(f"peak RSS of the process through compaction (data generation included): {rss_ours:.0f} MB")


if __name__ == "__main__":
    main()
