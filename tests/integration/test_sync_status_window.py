"""`delete_after_upload` keeps a verified segment closed less than an hour ago: `fluxforge status`
counts each stream's gaps and drops of the last hour from the segments themselves, and a bad hour
deleted as soon as it was uploaded read as "0 gaps, nothing needs attention" (found by bench/soak.py).
moto's server mode, real boto3, the real `fluxforge sync` and `fluxforge status`."""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import moto  # noqa: E402,F401
from syncdata import bronze_segment, fresh_logging, utc_day  # noqa: E402,F401
from test_sync import bucket, write_config  # noqa: E402,F401

from fluxforge.cli import main  # noqa: E402
from fluxforge.config import load_config  # noqa: E402
from fluxforge.observe.stream_health import WINDOW_S  # noqa: E402
from fluxforge.sync.run import delete_uploaded_locally, in_status_window  # noqa: E402
from fluxforge.sync.state import UploadState  # noqa: E402


def _gaps(cfg_path: Path, capsys) -> dict:
    """`fluxforge status --json`: the (exchange, symbol) streams' gaps of the last hour."""
    capsys.readouterr()
    main(["status", "-c", str(cfg_path), "--json", "--no-units"])
    facts = json.loads(capsys.readouterr().out)
    return {(s["exchange"], s["symbol"]): s["gaps_last_hour"] for s in facts["streams"]}


def test_a_segment_of_the_last_hour_stays_for_status_until_it_is_an_hour_old(tmp_path, moto, bucket, capsys):
    cfg_path = write_config(tmp_path, moto.url, bucket, delete_after_upload=True)
    cfg = load_config(cfg_path)
    old = bronze_segment(cfg.segments_dir, "pi01", 1, utc_day(1))
    # closed a minute after it began (syncdata): two minutes ago; it holds a reconnect event
    recent = bronze_segment(cfg.segments_dir, "pi01", 2, datetime.now(timezone.utc) - timedelta(minutes=3))
    assert _gaps(cfg_path, capsys) == {("binance", "BTC/USDT"): 1}

    assert main(["sync", "-c", str(cfg_path)]) == 0
    assert not old.exists() and recent.is_dir()  # both verified in S3; the recent one stays
    with UploadState(cfg.state_dir) as state:
        assert {r.logical.split("/")[-2] for r in state.all()} >= {recent.name}  # recorded as uploaded
    assert _gaps(cfg_path, capsys) == {("binance", "BTC/USDT"): 1}  # status still sees the reconnect

    assert main(["sync", "-c", str(cfg_path)]) == 0  # nothing to upload again, and it is still too young
    assert recent.is_dir()
    with UploadState(cfg.state_dir) as state:  # an hour later the segment is out of status's window
        assert delete_uploaded_locally(cfg, state, now=time.time() + WINDOW_S) == 1
        assert not recent.exists() and state.all() == []


@pytest.mark.parametrize("closed_ago, kept", [
    (60, True), (WINDOW_S - 60, True), (WINDOW_S + 1, False),
    (-WINDOW_S - 60, False),  # closed "in the future": the clock stepped back; it does not hold it back
])
def test_the_status_window_is_the_hour_since_the_segment_closed(tmp_path, closed_ago, kept):
    cfg = load_config(write_config(tmp_path, "http://127.0.0.1:9", "unused"))
    seg = bronze_segment(cfg.segments_dir, "pi01", 1, utc_day(1))
    now = datetime.fromisoformat(json.loads((seg / "manifest.json").read_text())["closed"]).timestamp() + closed_ago
    assert in_status_window(seg, now) is kept


@pytest.mark.parametrize("age, kept", [(0, True), (WINDOW_S + 60, False)])
def test_without_a_close_time_in_its_manifest_a_segment_is_as_old_as_its_manifest_file(tmp_path, age, kept):
    cfg = load_config(write_config(tmp_path, "http://127.0.0.1:9", "unused"))
    seg = bronze_segment(cfg.segments_dir, "pi01", 1, datetime.now(timezone.utc))
    manifest = json.loads((seg / "manifest.json").read_text())
    del manifest["closed"]
    (seg / "manifest.json").write_text(json.dumps(manifest))
    then = time.time() - age
    os.utime(seg / "manifest.json", (then, then))
    assert in_status_window(seg, time.time()) is kept
