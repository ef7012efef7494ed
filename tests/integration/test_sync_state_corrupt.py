"""A corrupt `state/sync.sqlite`: one clear line, exit 1, and retention still runs -- safely.

Retention normally deletes only what the record says is verified in S3; with no
readable record nothing counts as uploaded, so only `allow_unsynced_deletion`
can free space, exactly as when S3 was never reached.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from syncdata import bronze_segment, fresh_logging, make_config, utc_day  # noqa: E402,F401

from fluxforge.cli import main  # noqa: E402
from fluxforge.bronze.segments import SegmentStore  # noqa: E402


def setup(tmp_path: Path, allow_unsynced: bool, sync_enabled: bool) -> Path:
    data = tmp_path / "data"
    cfg = make_config(data)
    for i in range(3):
        bronze_segment(cfg.segments_dir, "pi01", i + 1, utc_day(2).replace(hour=i), rows=200, seed=i)
    (data / "state").mkdir(parents=True, exist_ok=True)
    (data / "state" / "sync.sqlite").write_bytes(os.urandom(8192))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(data), "host_id": "pi01", "logging": {"format": "json"},
        # any real filesystem is above 1 %: retention wants to delete everything it may
        "retention": {"disk_high_watermark": 1, "disk_low_watermark": 1, "allow_unsynced_deletion": allow_unsynced},
        "sync": {"enabled": sync_enabled, "bucket": "b", "endpoint_url": "http://127.0.0.1:9", "region": "us-east-1",
                 "aws_access_key_id": "k", "aws_secret_access_key": "s", "require_time_sync": False},
    }))
    return path


def done(tmp_path: Path) -> int:
    return len(SegmentStore(tmp_path / "data" / "segments").list("done"))


@pytest.mark.parametrize("command", [["retention"], ["sync"], ["sync", "--disabled"]])
@pytest.mark.parametrize("allow_unsynced", [False, True])
def test_corrupt_record_is_one_line_and_retention_stays_safe(tmp_path, capsys, command, allow_unsynced):
    enabled = command == ["sync"]
    cfg = setup(tmp_path, allow_unsynced, enabled)
    assert main([command[0], "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert '"event": "sync_state_corrupt"' in err and "sync.sqlite.corrupt" in err
    # retention ran: nothing unverified is deleted unless the operator allowed it
    assert done(tmp_path) == (0 if allow_unsynced else 3)
    assert ("retention_deleted_unsynced_data" in err) == allow_unsynced
    assert ("retention_blocked_by_unsynced_data" in err) == (not allow_unsynced)
