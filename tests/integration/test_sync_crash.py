"""SIGKILL `fluxforge sync` at random points: reruns converge, the bucket mirrors the disk exactly once."""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import MotoServer  # noqa: E402
from syncdata import bronze_segment, fluxforge_cli, fresh_logging, run_and_maybe_kill, tree_digest, utc_day  # noqa: E402,F401
from test_sync import big_part, local_expected, populate, remote_keys, write_config  # noqa: E402

from fluxforge.cli import main  # noqa: E402
from fluxforge.sync.state import UploadState  # noqa: E402


def test_sigkill_sync_converges(tmp_path):
    populate(tmp_path, segments=6)
    features = tmp_path / "data" / "features"
    for i in range(3):
        p = big_part(features, utc_day(3 + i).date().isoformat(), mb=8 + i)
        p.rename(p.with_name(p.name.replace("000900", f"00090{i}")))
    with MotoServer() as moto:
        moto.client().create_bucket(Bucket="fluxforge-crash")
        cfg = write_config(tmp_path, moto.url, "fluxforge-crash", workers=2)
        cmd = fluxforge_cli("sync", "-c", str(cfg))
        rnd = random.Random(11)
        killed = 0
        for attempt in range(10):
            if killed >= 3:
                break
            # fresh work for every run: a new segment and a new multipart-sized feature part
            bronze_segment(tmp_path / "data" / "segments", "pi01", 100 + attempt, utc_day(1).replace(hour=attempt))
            p = big_part(features, utc_day(6 + attempt).date().isoformat(), mb=6)
            p.rename(p.with_name(p.name.replace("000900", f"{950 + attempt:06d}")))
            killed += run_and_maybe_kill(cmd, rnd.uniform(0.5, 1.8))
        assert killed >= 2
        final = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr[-3000:]
        expected = local_expected(tmp_path / "data")
        assert remote_keys(moto, "fluxforge-crash") == set(expected)   # nothing missing, nothing extra
        assert moto.client().list_multipart_uploads(Bucket="fluxforge-crash").get("Uploads", []) == []
        with UploadState(tmp_path / "data" / "state") as state:
            assert {r.logical for r in state.all()} == set(expected)
        assert main(["sync", "-c", str(cfg), "--download", "", "--to", str(tmp_path / "restore")]) == 0
        assert tree_digest(tmp_path / "restore") == expected
