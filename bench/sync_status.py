"""What `fluxforge status` pays for the sync record: rows counted in SQL vs every row read.

Builds a `state/sync.sqlite` with N rows (an appliance after months of uploads,
before rows of deleted files were forgotten) and times, in the same run, the
query status now makes (`UploadState.count()` + `last_upload()`) against the
baseline it used to make (`len(state.all())` + `max(uploaded_at)`), and prints
the ratio.  Usage: `python bench/sync_status.py [--rows N]`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fluxforge.sync.state import UploadState  # noqa: E402


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        state = UploadState(Path(d))
        st = os.stat(d)
        state.db.executemany(
            "INSERT INTO uploaded VALUES (?,?,?,?,?,?,?,?)",
            ((f"bronze/host=pi01/date=2026-01-01/seg-pi01-20260101T000000Z-{i:06d}/orderbook.parquet",
              st.st_size, st.st_mtime_ns, "CRC32C", "AAAAAA==", 0, None, "2026-01-01T00:00:00+00:00")
             for i in range(args.rows)))
        state.db.execute("INSERT INTO meta VALUES ('last_upload', '2026-01-01T00:00:00+00:00')")  # as record() keeps it
        state.db.commit()

        def baseline() -> tuple[int, str]:
            return len(state.all()), state.db.execute("SELECT max(uploaded_at) FROM uploaded").fetchone()[0]

        def counted() -> tuple[int, str | None]:
            return state.count(), state.last_upload()

        assert baseline()[0] == counted()[0] == args.rows
        b, c = best_of(baseline), best_of(counted)
        print(f"sync.sqlite with {args.rows:,} rows: read every row {b * 1e3:.1f} ms, count in SQL {c * 1e3:.1f} ms, "
              f"ratio {b / c:.1f}x")
        state.close()


if __name__ == "__main__":
    main()
