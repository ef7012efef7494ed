"""The timers' textfiles: `fluxforge sync` (moto over HTTP, real boto3) and `fluxforge compact` leave
node_exporter textfiles with last run, duration, outcome and counts, parsed with prometheus_client."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import moto  # noqa: E402,F401
from syncdata import bronze_segment, feature_day, fresh_logging, utc_day  # noqa: E402,F401

from fluxforge.cli import main  # noqa: E402
from fluxforge.observe import metric_defs as M  # noqa: E402


def write_config(tmp_path: Path, endpoint: str, bucket: str, name: str = "config.yaml") -> Path:
    data = {
        "data_dir": str(tmp_path / "data"), "host_id": "pi01",
        "sync": {"enabled": True, "bucket": bucket, "prefix": "fleet", "endpoint_url": endpoint,
                 "region": "us-east-1", "addressing_style": "path", "aws_access_key_id": "testing",
                 "aws_secret_access_key": "testing", "require_time_sync": False, "max_attempts": 1,
                 "connect_timeout": 1, "read_timeout": 2},
        "metrics": {"textfile_dir": str(tmp_path / "textfiles")},
        "logging": {"format": "json"},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    (tmp_path / "textfiles").mkdir(exist_ok=True)
    return path


def values(path: Path) -> dict[tuple, float]:
    """{(sample name, sorted labels...): value} of one textfile."""
    out = {}
    for fam in text_string_to_metric_families(path.read_text()):
        for s in fam.samples:
            out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def test_sync_textfiles_after_success_and_failure(tmp_path, moto):
    moto.client().create_bucket(Bucket="fluxforge-metrics")
    cfg_path = write_config(tmp_path, moto.url, "fluxforge-metrics")
    data = tmp_path / "data"
    for i in range(2):
        bronze_segment(data / "segments", "pi01", i + 1, utc_day(1).replace(hour=i), seed=i)
    feature_day(data / "features", utc_day(1), segments=2, rows_per_segment=50)
    files = [p for p in data.rglob("*") if p.is_file()]

    assert main(["sync", "-c", str(cfg_path)]) == 0
    sync = values(tmp_path / "textfiles" / "fluxforge_sync.prom")
    assert sync[(M.JOB_OUTCOME.name, ("outcome", "success"), ("task", "sync"))] == 1.0
    assert sync[(M.SYNC_UPLOADED_FILES.name,)] == len(files)
    assert sync[(M.SYNC_UPLOADED_BYTES.name,)] == sum(p.stat().st_size for p in files)
    assert sync[(M.SYNC_BACKLOG_FILES.name,)] == 0 and sync[(M.SYNC_BACKLOG_BYTES.name,)] == 0
    assert sync[(M.SYNC_LAST_VERIFIED.name,)] > 0
    assert sync[(M.JOB_DURATION.name, ("task", "sync"))] > 0
    success_at = sync[(M.JOB_LAST_SUCCESS.name, ("task", "sync"))]
    retention = values(tmp_path / "textfiles" / "fluxforge_retention.prom")
    assert retention[(M.JOB_OUTCOME.name, ("outcome", "success"), ("task", "retention"))] == 1.0
    assert retention[(M.RETENTION_DELETED_FILES.name,)] == 0

    # S3 unreachable: the run fails, the textfile says so, the last success is kept
    feature_day(data / "features", utc_day(0), segments=1, rows_per_segment=20, seed=5)
    dead = write_config(tmp_path, "http://127.0.0.1:9", "fluxforge-metrics", name="dead.yaml")
    assert main(["sync", "-c", str(dead)]) != 0
    sync = values(tmp_path / "textfiles" / "fluxforge_sync.prom")
    assert sync[(M.JOB_OUTCOME.name, ("outcome", "failure"), ("task", "sync"))] == 1.0
    assert sync[(M.JOB_LAST_SUCCESS.name, ("task", "sync"))] == success_at
    assert sync[(M.SYNC_S3_ERRORS.name, ("kind", "connection"))] >= 1
    assert sync[(M.SYNC_BACKLOG_FILES.name,)] >= 1


def test_compact_textfile_and_dry_run_writes_nothing(tmp_path):
    cfg_path = write_config(tmp_path, "http://127.0.0.1:9", "unused")
    parts = feature_day(tmp_path / "data" / "features", utc_day(3), segments=4, rows_per_segment=30)
    prom = tmp_path / "textfiles" / "fluxforge_compact.prom"
    assert main(["compact", "-c", str(cfg_path), "--dry-run"]) == 0
    assert not prom.exists()
    assert main(["compact", "-c", str(cfg_path)]) == 0
    compact = values(prom)
    assert compact[(M.JOB_OUTCOME.name, ("outcome", "success"), ("task", "compact"))] == 1.0
    assert compact[(M.COMPACT_FILES.name,)] == len(parts)
    assert compact[(M.COMPACT_BYTES.name,)] > 0


def test_a_damaged_textfile_is_replaced_not_a_crash_of_every_run(tmp_path):
    """The last run's file is read for its last-success time: bytes that are not text in it (bit
    rot, another tool's file) made every later run raise UnicodeDecodeError after its work, so
    the timer failed for good and the file was never replaced."""
    cfg_path = write_config(tmp_path, "http://127.0.0.1:9", "unused")
    prom = tmp_path / "textfiles" / "fluxforge_compact.prom"
    prom.write_bytes(b"\xff\xfe\x00 not a textfile")
    assert main(["compact", "-c", str(cfg_path)]) == 0
    assert values(prom)[(M.JOB_OUTCOME.name, ("outcome", "success"), ("task", "compact"))] == 1.0
