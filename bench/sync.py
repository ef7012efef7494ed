"""Sync throughput: MB/s uploaded to moto (server mode, HTTP on 127.0.0.1) by `fluxforge sync`
with the configured workers -- including local CRC32C, HEAD verification and the sqlite state --
versus a plain sequential `client.upload_file` loop over the same files, in the same run.
Also what checking bronze files against their manifests' sha256 before upload adds
(sync/bronze_integrity.py), on the same bytes laid out as bronze segments, against that sync.

Data: 24 feature parts of 2 MB and 2 of 16 MB (multipart, 8 MB chunks), incompressible.
Run: .venv/bin/python bench/sync.py [--workers N]   (make bench)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from s3harness import MotoServer  # noqa: E402

from fluxforge.config import parse_config  # noqa: E402
from fluxforge.logs import configure_logging  # noqa: E402
from fluxforge.sync.client import make_target  # noqa: E402
from fluxforge.sync.run import run_sync  # noqa: E402
from fluxforge.sync.state import UploadState  # noqa: E402

MB = 1024 * 1024
ROUNDS = 3


def empty(s3, bucket: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=o["Key"])


def make_files(root: Path) -> list[Path]:
    files = []
    sizes = [2 * MB] * 24 + [16 * MB] * 2
    for i, size in enumerate(sizes):
        p = (root / "features" / "hf" / "exchange=binance" / f"symbol=S{i % 4}-USDT" / "date=2024-08-08"
             / f"part-seg-bench-20240808T{i:02d}0000Z-{i + 1:06d}.parquet")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(size))
        files.append(p)
    return files


def as_bronze(files: list[Path], root: Path) -> list:
    """The same bytes as finished segments of four channel files with their manifests."""
    import hashlib
    import json

    from fluxforge.sync.layout import segment_files

    out = []
    for s in range(0, len(files), 4):
        seg = root / f"seg-bench-20240808T{s // 4:02d}0000Z-{s + 1:06d}"
        seg.mkdir(parents=True)
        channels = {}
        for ch, f in zip(("orderbook", "trades", "events", "ticker"), files[s:s + 4]):
            data = f.read_bytes()
            (seg / f"{ch}.parquet").write_bytes(data)
            channels[ch] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        (seg / "manifest.json").write_text(json.dumps({"channels": channels}))
        out += segment_files(seg)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=None, help="default: sync.workers from the config defaults (4)")
    args = ap.parse_args()
    configure_logging("WARNING", "json")
    with tempfile.TemporaryDirectory() as tmp, MotoServer() as moto:
        data = Path(tmp) / "data"
        files = make_files(data)
        total = sum(f.stat().st_size for f in files)
        s3 = moto.client()
        s3.create_bucket(Bucket="baseline")
        s3.create_bucket(Bucket="fluxforge")

        sync = {"enabled": True, "bucket": "fluxforge", "endpoint_url": moto.url, "region": "us-east-1",
                "addressing_style": "path", "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                "require_time_sync": False}
        if args.workers:
            sync["workers"] = args.workers
        cfg = parse_config({"data_dir": str(data), "host_id": "bench", "sync": sync})
        target = make_target(cfg.sync)
        base_runs, ours_runs = [], []
        for _round in range(ROUNDS):  # alternate, so machine noise hits both alike; report medians
            t = time.perf_counter()
            for f in files:
                s3.upload_file(str(f), "baseline", f.relative_to(data).as_posix())
            base_runs.append(time.perf_counter() - t)
            empty(s3, "baseline")

            for name in ("sync.sqlite", "sync.sqlite-wal", "sync.sqlite-shm"):  # forget the previous round
                (cfg.state_dir / name).unlink(missing_ok=True)
            with UploadState(cfg.state_dir) as state:
                t = time.perf_counter()
                report = run_sync(cfg, target, state)
                ours_runs.append(time.perf_counter() - t)
            assert report.uploaded == len(files) and not report.failed, report
            empty(s3, "fluxforge")
        base_s, ours_s = statistics.median(base_runs), statistics.median(ours_runs)
        base_mbs, ours_mbs = total / MB / base_s, total / MB / ours_s
        print(f"files: {len(files)}, {total / MB:.0f} MB; moto on 127.0.0.1; {os.cpu_count()} cores; "
              f"median of {ROUNDS} alternating rounds; load average {os.getloadavg()[0]:.1f}")
        print(f"baseline  sequential upload_file loop      : {base_mbs:7.1f} MB/s  ({base_s:.2f} s)")
        print(f"fluxforge sync, workers={cfg.sync.workers}, {cfg.sync.checksum_algorithm} + HEAD verify: "
              f"{ours_mbs:7.1f} MB/s  ({ours_s:.2f} s)")
        print(f"ratio sync/baseline: {ours_mbs / base_mbs:.2f}x")

        from fluxforge.sync.bronze_integrity import damaged

        bronze = as_bronze(files, Path(tmp) / "bronze")
        checks = []
        for _round in range(ROUNDS):
            t = time.perf_counter()
            assert not damaged(bronze, cfg.sync.workers)
            checks.append(time.perf_counter() - t)
        check_s = statistics.median(checks)
        print(f"bronze check before upload (size + sha256 vs manifest), same bytes: {check_s:.2f} s, "
              f"{check_s / ours_s:.2f}x of that sync's time ({total / MB / check_s:.0f} MB/s)")


if __name__ == "__main__":
    main()
