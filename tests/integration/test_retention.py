"""Retention on a real small filesystem (a size-limited tmpfs, CI is root) filled past the watermark:
only data verified in S3 is removed, oldest first, bronze before features."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import moto  # noqa: E402,F401
from syncdata import bronze_segment, feature_day, make_config, utc_day, fresh_logging  # noqa: E402,F401

from fluxforge.cli import main  # noqa: E402
from fluxforge.maintenance.retention import disk_usage_percent  # noqa: E402
from fluxforge.bronze.segments import SegmentStore  # noqa: E402

MB = 1024 * 1024


@pytest.fixture
def small_fs(mount_tmpfs):
    return mount_tmpfs("24m")


def write_config(fs: Path, url: str, bucket: str, **retention) -> Path:
    p = fs.parent / "config.yaml"
    p.write_text(yaml.safe_dump({
        "data_dir": str(fs / "data"), "host_id": "pi01", "logging": {"format": "json"},
        "sync": {"enabled": True, "bucket": bucket, "endpoint_url": url, "region": "us-east-1",
                 "addressing_style": "path", "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                 "require_time_sync": False},
        "retention": {"disk_high_watermark": 80, "disk_low_watermark": 60, **retention}}))
    return p


def set_retention(cfg_path: Path, **retention) -> None:
    data = yaml.safe_load(cfg_path.read_text())
    data["retention"].update(retention)
    cfg_path.write_text(yaml.safe_dump(data))


def fill_to(fs: Path, percent: float) -> None:
    """Grow a file that retention does not manage until the filesystem is `percent` full."""
    filler = fs / "filler.bin"
    with open(filler, "ab") as f:
        while disk_usage_percent(fs) < percent:
            f.write(os.urandom(256 * 1024))


def done_names(fs: Path) -> list[str]:
    return [p.name for p in SegmentStore(fs / "data" / "segments").list("done")]


def setup_data(fs: Path, moto, bucket: str) -> tuple[Path, list[str], list[str]]:
    """6 uploaded segments + features, then 3 *older* segments that are not uploaded."""
    cfg = make_config(fs / "data")
    for i in range(6):
        bronze_segment(cfg.segments_dir, "pi01", 10 + i, utc_day(3).replace(hour=i), rows=1000, seed=i)
    feature_day(cfg.features_dir, utc_day(3), segments=4, rows_per_segment=3000)
    moto.client().create_bucket(Bucket=bucket)
    cfg_path = write_config(fs, moto.url, bucket)
    assert main(["sync", "-c", str(cfg_path)]) == 0  # below the watermark: uploads, deletes nothing
    uploaded = done_names(fs)
    assert len(uploaded) == 6
    for i in range(3):
        bronze_segment(cfg.segments_dir, "pi01", 1 + i, utc_day(5).replace(hour=i), rows=1000, seed=20 + i)
    unsynced = [n for n in done_names(fs) if n not in uploaded]
    return cfg_path, uploaded, unsynced


def test_only_uploaded_data_is_deleted_oldest_first(small_fs, moto, capsys):
    cfg_path, uploaded, unsynced = setup_data(small_fs, moto, "fluxforge-ret-1")
    set_retention(cfg_path, disk_low_watermark=72)
    fill_to(small_fs, 82)
    assert main(["retention", "-c", str(cfg_path)]) == 0
    remaining = done_names(small_fs)
    assert all(n in remaining for n in unsynced)                 # never uploaded: kept although older
    deleted = [n for n in uploaded if n not in remaining]
    assert deleted and deleted == uploaded[:len(deleted)]         # oldest uploaded first
    assert 0 < len(deleted) < len(uploaded) and disk_usage_percent(small_fs) < 72
    err = capsys.readouterr().err
    assert "retention_deleted" in err and "retention_deleted_unsynced_data" not in err


def test_bronze_before_features_and_unsynced_kept_when_not_enough(small_fs, moto, capsys):
    cfg_path, uploaded, unsynced = setup_data(small_fs, moto, "fluxforge-ret-2")
    features = sorted((small_fs / "data" / "features").rglob("*.parquet"))
    fill_to(small_fs, 97)  # deleting every uploaded byte cannot reach the low watermark
    assert main(["retention", "-c", str(cfg_path)]) == 0
    assert done_names(small_fs) == sorted(unsynced)             # all uploaded bronze gone, unsynced kept
    assert not any(p.exists() for p in features)                  # then the uploaded features
    err = capsys.readouterr().err
    assert "retention_blocked_by_unsynced_data" in err


def test_allow_unsynced_deletion_deletes_loudly(small_fs, moto, capsys):
    cfg_path, uploaded, unsynced = setup_data(small_fs, moto, "fluxforge-ret-3")
    set_retention(cfg_path, allow_unsynced_deletion=True)
    fill_to(small_fs, 97)
    assert main(["retention", "-c", str(cfg_path)]) == 0
    assert done_names(small_fs) == []
    err = capsys.readouterr().err
    assert err.count("retention_deleted_unsynced_data") == len(unsynced)
    assert '"level": "error"' in err


def test_sync_applies_retention_after_upload(small_fs, moto):
    cfg_path, uploaded, unsynced = setup_data(small_fs, moto, "fluxforge-ret-4")
    set_retention(cfg_path, disk_low_watermark=72)
    fill_to(small_fs, 82)
    assert main(["sync", "-c", str(cfg_path)]) == 0  # uploads the 3 older segments, then frees space
    remaining = done_names(small_fs)
    everything = sorted(uploaded + unsynced)
    deleted = [n for n in everything if n not in remaining]
    assert deleted == everything[:len(deleted)] and deleted[0] == sorted(unsynced)[0]
    assert disk_usage_percent(small_fs) < 72


def test_retention_runs_even_when_s3_is_down(small_fs, moto, capsys):
    cfg_path, uploaded, unsynced = setup_data(small_fs, moto, "fluxforge-ret-5")
    data = yaml.safe_load(cfg_path.read_text())
    data["sync"]["endpoint_url"] = "http://127.0.0.1:9"  # nothing listens: every request fails
    data["sync"]["max_attempts"] = 1
    cfg_path.write_text(yaml.safe_dump(data))
    set_retention(cfg_path, disk_low_watermark=72)
    fill_to(small_fs, 82)
    assert main(["sync", "-c", str(cfg_path)]) == 1
    assert "cannot reach S3 endpoint" in capsys.readouterr().err
    remaining = done_names(small_fs)
    assert all(n in remaining for n in unsynced)  # still protected
    deleted = [n for n in uploaded if n not in remaining]
    assert deleted and deleted == uploaded[:len(deleted)]  # the oldest verified ones went, S3 down or not
    assert disk_usage_percent(small_fs) < 72
