"""An ETL checkpoint that cannot be read (bit rot on a failing card: the atomic replace rules out
a torn one): the real service sets it aside, says so at error level, becomes READY and goes on
from empty kernel state -- writing exactly what an ETL that starts at that segment with no
checkpoint writes -- instead of raising at every start.  Before, `fluxforge etl` died with
ArrowInvalid (or the engines' error) at start-up: a crash loop into `failed`, and every revive
failed again, so the box stopped making features for good."""
import os
import shutil
import signal
import subprocess
import time

import pyarrow as pa
import pytest

from notify_listener import NotifyListener
from etl_support import etl_config, fluxforge_cmd, synthetic_market, tables_equal, tree_files, write_segments
from fluxforge.config import FeatureOptions
from fluxforge.etl.checkpoint import CheckpointStore
from fluxforge.etl.runner import EtlRunner

FEATURES = {"bar_durations": [1, 5], "hf_emit_interval": 0.5}


def damage(path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(os.urandom(4096))
    elif how == "flipped":  # every 50th byte changed: Arrow's footer check fails (an OSError without errno)
        data = bytearray(path.read_bytes())
        for i in range(0, len(data), 50):
            data[i] ^= 0x5A
        path.write_bytes(bytes(data))
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:  # a readable file whose kernel state bytes are not a state
        with pa.OSFile(str(path), "rb") as f:
            table = pa.ipc.open_file(f).read_all()
        state = pa.array([os.urandom(64) for _ in range(table.num_rows)], pa.binary())
        table = table.set_column(table.schema.get_field_index("state"), table.schema.field("state"), state)
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)


@pytest.mark.parametrize("how", ["garbage", "flipped", "truncated", "bad_state"])
def test_the_service_sets_an_unreadable_checkpoint_aside_and_goes_on(tmp_path, how):
    market = synthetic_market(symbols=("BTC/USDT", "ETH/USDT"), seconds=120, depth=10, seed=5)
    staging = tmp_path / "staging"
    write_segments(staging, market, 6, seconds=120)
    segments = sorted(staging.iterdir())
    data = tmp_path / "data"
    (data / "segments/ready").mkdir(parents=True)
    for seg in segments[:3]:
        shutil.copytree(seg, data / "segments/ready" / seg.name)
    cfg = etl_config(tmp_path / "config.yaml", data, FEATURES)
    first = subprocess.run(fluxforge_cmd("etl", "--once", "--config", str(cfg)), capture_output=True, timeout=300)
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    checkpoint = data / "state/etl/checkpoint.arrow"
    assert CheckpointStore(data / "state").load().last_segment == segments[2].name
    damage(checkpoint, how)
    damaged = checkpoint.read_bytes()
    for seg in segments[3:]:
        shutil.copytree(seg, data / "segments/ready" / seg.name)

    # what an ETL that starts at the fourth segment with no checkpoint writes
    ref = tmp_path / "ref"
    for seg in segments[3:]:
        shutil.copytree(seg, ref / "segments/ready" / seg.name)
    EtlRunner(ref / "segments", ref / "features", ref / "state", FeatureOptions(**FEATURES)).run_once()

    listener = NotifyListener(tmp_path / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    log = tmp_path / "etl.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(fluxforge_cmd("etl", "--config", str(cfg)), env=env, stdout=out, stderr=out)
    try:
        assert listener.wait_for("READY=1", 120), log.read_text()[-3000:]
        deadline = time.monotonic() + 120
        while len(list((data / "segments/done").iterdir())) < 6 and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        listener.close()

    text = log.read_text()
    assert '"event": "checkpoint_unreadable"' in text and '"level": "error"' in text and "Traceback" not in text
    aside = list(checkpoint.parent.glob("checkpoint.arrow.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # kept as it was, for a look
    assert CheckpointStore(data / "state").load().last_segment == segments[-1].name  # a good one again
    assert not list((data / "segments/failed").iterdir())
    want = tree_files(ref / "features")
    got = {k: t for k, t in tree_files(data / "features").items() if any(s.name in k for s in segments[3:])}
    assert want and want.keys() == got.keys()
    for k in want:
        assert tables_equal(want[k], got[k]), k
