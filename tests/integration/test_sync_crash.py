"""SIGKILL `fluxforge sync` at random points: reruns converge, the bucket mirrors the disk exactly once."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import MotoServer  # noqa: E402
from syncdata import tree_digest, utc_day  # noqa: E402
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
        cmd = [sys.executable, "-m", "fluxforge.cli", "sync", "-c", str(cfg)]
        rnd = random.Random(11)
        killed = 0
        for _ in range(5):
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rnd.uniform(0.6, 2.0))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                killed += 1
            proc.wait(timeout=60)
        assert killed >= 2
        assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
        expected = local_expected(tmp_path / "data")
        assert remote_keys(moto, "fluxforge-crash") == set(expected)   # nothing missing, nothing extra
        assert moto.client().list_multipart_uploads(Bucket="fluxforge-crash").get("Uploads", []) == []
        with UploadState(tmp_path / "data" / "state") as state:
            assert {r.logical for r in state.all()} == set(expected)
        assert main(["sync", "-c", str(cfg), "--download", "", "--to", str(tmp_path / "restore")]) == 0
        assert tree_digest(tmp_path / "restore") == expected
