"""`fluxforge sync` against moto's server mode over HTTP (real boto3), with a fault-injecting proxy in between."""
from __future__ import annotations

import base64
import hashlib
import itertools
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import Fault, FaultProxy, is_put_object, is_upload_part, moto  # noqa: E402,F401
from syncdata import (bronze_segment, feature_day, fresh_logging, hf_table, make_config,  # noqa: E402,F401
                      tree_digest, utc_day, write_part)

from fluxforge.cli import main  # noqa: E402
from fluxforge.maintenance.compaction import compact  # noqa: E402
from fluxforge.bronze.segments import SegmentId  # noqa: E402
from fluxforge.sync.state import UploadState  # noqa: E402

_bucket_ids = itertools.count()


@pytest.fixture
def proxy(moto):
    p = FaultProxy(moto.port)
    yield p
    p.close()


@pytest.fixture
def bucket(moto):
    name = f"fluxforge-test-{next(_bucket_ids)}"
    moto.client().create_bucket(Bucket=name)
    return name


def write_config(tmp_path: Path, endpoint: str, bucket: str, **sync) -> Path:
    data = {
        "data_dir": str(tmp_path / "data"), "host_id": "pi01",
        "sync": {"enabled": True, "bucket": bucket, "prefix": "fleet", "endpoint_url": endpoint,
                 "region": "us-east-1", "addressing_style": "path", "aws_access_key_id": "testing",
                 "aws_secret_access_key": "testing", "workers": 4, "multipart_threshold_mb": 5,
                 "multipart_chunk_mb": 5, "require_time_sync": False, "max_attempts": 6, **sync},
        "compaction": {"target_file_mb": 4},
        "logging": {"format": "json"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def big_part(features_dir: Path, day: str, mb: float = 11) -> Path:
    """An incompressible hf part above the multipart threshold (3 parts of 5 MB)."""
    n = int(mb * 1024 * 1024 / 16)
    rng = np.random.default_rng(7)
    t = pa.table({"timestamp": pa.array(np.arange(n, dtype=np.int64), pa.timestamp("ms", tz="UTC")),
                  "mid": rng.random(n), "spread_bps": rng.random(n)})
    p = features_dir / "hf" / "exchange=binance" / "symbol=SOL-USDT" / f"date={day}" / "part-seg-pi01-20200101T000000Z-000900.parquet"
    p.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, p, compression="none")
    return p


def populate(tmp_path: Path, big: bool = False, segments: int = 3) -> None:
    cfg = make_config(tmp_path / "data")
    for i in range(segments):
        bronze_segment(cfg.segments_dir, "pi01", i + 1, utc_day(2 - i % 2).replace(hour=i), seed=i)
    feature_day(cfg.features_dir, utc_day(2), segments=8, rows_per_segment=200)
    feature_day(cfg.features_dir, utc_day(0), segments=2, rows_per_segment=50, seed=3)
    if big:
        big_part(cfg.features_dir, utc_day(1).date().isoformat())


def local_expected(data: Path) -> dict[str, str]:
    """{logical path: sha256} the bucket must mirror."""
    out = {}
    for rel, digest in tree_digest(data / "segments" / "done").items():
        seg, name = rel.split("/", 1)
        day = SegmentId.parse(seg).start_datetime.date().isoformat()
        out[f"bronze/host=pi01/date={day}/{seg}/{name}"] = digest
    for rel, digest in tree_digest(data / "features").items():
        out[f"features/{rel}"] = digest
    return out


def remote_keys(moto, bucket: str) -> set[str]:
    keys = set()
    for page in moto.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="fleet/"):
        keys.update(o["Key"][len("fleet/"):] for o in page.get("Contents", []))
    return keys


def download_tree(cfg_path: Path, dest: Path) -> dict[str, str]:
    assert main(["sync", "-c", str(cfg_path), "--download", "", "--to", str(dest)]) == 0
    return tree_digest(dest)


def puts(proxy) -> int:
    return sum(1 for m, _p in proxy.requests if m in ("PUT", "POST"))


def test_round_trip_rerun_and_compaction(tmp_path, moto, proxy, bucket, capsys):
    populate(tmp_path, big=True)
    cfg_path = write_config(tmp_path, proxy.url, bucket)
    data = tmp_path / "data"
    assert main(["sync", "-c", str(cfg_path)]) == 0
    expected = local_expected(data)
    assert remote_keys(moto, bucket) == set(expected)
    assert any(is_upload_part(m, p) for m, p in proxy.requests)  # the big part went multipart
    assert all(k.startswith(("bronze/host=pi01/date=", "features/hf/", "features/bars/")) for k in expected)

    # a rerun uploads nothing
    before = puts(proxy)
    assert main(["sync", "-c", str(cfg_path)]) == 0
    assert puts(proxy) == before

    # download into an empty dir reads back identical
    assert download_tree(cfg_path, tmp_path / "restore1") == expected

    # compaction replaces parts; the next sync mirrors that (no part twice in the bucket)
    cfg = make_config(data, compaction={"target_file_mb": 4})
    assert compact(cfg).groups > 0
    assert main(["sync", "-c", str(cfg_path)]) == 0
    expected = local_expected(data)
    assert remote_keys(moto, bucket) == set(expected)
    restored = download_tree(cfg_path, tmp_path / "restore2")
    assert restored == expected
    for rel in expected:  # and the Parquet reads back with the same rows
        if rel.startswith("features/") and rel.endswith(".parquet"):
            assert pq.read_table(tmp_path / "restore2" / rel).equals(pq.read_table(data / rel))
    # a late part lands in a compacted partition; the next compaction merges the merged file again,
    # and sync removes the now-superseded merged file from the bucket too
    hf = next(p for p in (data / "features" / "hf").rglob(f"date={utc_day(2).date().isoformat()}"))
    late = SegmentId.new("pi01", 500, utc_day(2).replace(hour=23, minute=59))
    write_part(data / "features", "hf", "binance", "BTC-USDT", hf.name[5:], late,
               hf_table(int(late.start_datetime.timestamp() * 1000) + 1, 10, seed=9))
    assert compact(cfg).groups == 1
    assert main(["sync", "-c", str(cfg_path)]) == 0
    assert remote_keys(moto, bucket) == set(local_expected(data))
    out = capsys.readouterr()
    assert "testing" not in out.err.replace("fluxforge-test", "")  # the secret is never logged


def test_dry_run_uploads_nothing(tmp_path, moto, proxy, bucket, capsys):
    populate(tmp_path)
    cfg_path = write_config(tmp_path, proxy.url, bucket)
    assert main(["sync", "-c", str(cfg_path), "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert remote_keys(moto, bucket) == set()
    assert proxy.requests == []


def test_transient_faults_end_in_verified_success(tmp_path, moto, proxy, bucket):
    populate(tmp_path, big=True)
    faults = [
        proxy.add(Fault(is_put_object, "status", times=2, status=503, code="SlowDown")),
        proxy.add(Fault(is_put_object, "status", times=1, status=500, code="InternalError")),
        proxy.add(Fault(is_upload_part, "reset", times=1)),
        proxy.add(Fault(is_upload_part, "status", times=1, status=503, code="ServiceUnavailable")),
        proxy.add(Fault(lambda m, p: m == "HEAD" and "fleet/" in p, "status", times=1, status=500, code="InternalError")),
    ]
    cfg_path = write_config(tmp_path, proxy.url, bucket)
    assert main(["sync", "-c", str(cfg_path)]) == 0
    assert all(f.hits == f.times for f in faults)
    assert remote_keys(moto, bucket) == set(local_expected(tmp_path / "data"))
    with UploadState(tmp_path / "data" / "state") as state:
        assert len(state.all()) == len(local_expected(tmp_path / "data"))


def test_missing_bucket_is_a_clear_error_and_deletes_nothing(tmp_path, proxy, capsys):
    populate(tmp_path)
    before = tree_digest(tmp_path / "data")
    cfg_path = write_config(tmp_path, proxy.url, "no-such-bucket-here", delete_after_upload=True)
    assert main(["sync", "-c", str(cfg_path)]) == 1
    err = capsys.readouterr().err
    assert "bucket 'no-such-bucket-here' does not exist" in err and "Traceback" not in err
    after = tree_digest(tmp_path / "data")
    assert {k: v for k, v in after.items() if not k.startswith("state/")} == before


def test_persistent_5xx_fails_clearly_and_keeps_local_data(tmp_path, moto, proxy, bucket, capsys):
    populate(tmp_path, segments=1)
    proxy.add(Fault(is_put_object, "status", times=10_000, status=503, code="SlowDown"))
    before = tree_digest(tmp_path / "data")
    cfg_path = write_config(tmp_path, proxy.url, bucket, delete_after_upload=True, max_attempts=2, upload_features=False)
    assert main(["sync", "-c", str(cfg_path)]) == 1
    out = capsys.readouterr()
    assert "FAILED" in out.out and "SlowDown" in out.out
    after = tree_digest(tmp_path / "data")
    assert {k: v for k, v in after.items() if not k.startswith("state/")} == before
    with UploadState(tmp_path / "data" / "state") as state:
        assert state.all() == []


def test_corrupted_upload_is_detected_then_repaired(tmp_path, moto, proxy, bucket, capsys):
    cfg = make_config(tmp_path / "data")
    big = big_part(cfg.features_dir, utc_day(3).date().isoformat())
    proxy.add(Fault(is_upload_part, "corrupt_body", times=1))
    cfg_path = write_config(tmp_path, proxy.url, bucket, delete_after_upload=True)
    assert main(["sync", "-c", str(cfg_path)]) == 1
    out = capsys.readouterr()
    assert "does not match" in out.out or "in S3 but" in out.out
    assert big.exists()  # not deleted: never verified
    assert main(["sync", "-c", str(cfg_path)]) == 0  # clean retry
    assert not big.exists()  # delete_after_upload, now that it is verified (closed partition)


def test_wrong_checksum_in_head_is_detected(tmp_path, moto, proxy, bucket, capsys):
    populate(tmp_path, segments=1)
    proxy.add(Fault(lambda m, p: m == "HEAD" and p.endswith("orderbook.parquet"), "corrupt_checksum", times=1))
    cfg_path = write_config(tmp_path, proxy.url, bucket)
    assert main(["sync", "-c", str(cfg_path)]) == 1
    assert "orderbook.parquet" in capsys.readouterr().out
    with UploadState(tmp_path / "data" / "state") as state:
        assert not any(r.logical.endswith("orderbook.parquet") for r in state.all())
        assert not any(r.logical.endswith("manifest.json") for r in state.all())  # segment incomplete in S3


def test_verify_detects_tampered_object_and_next_sync_repairs(tmp_path, moto, proxy, bucket, capsys):
    populate(tmp_path, segments=1)
    cfg_path = write_config(tmp_path, proxy.url, bucket)
    assert main(["sync", "-c", str(cfg_path)]) == 0
    victim = next(k for k in remote_keys(moto, bucket) if k.endswith("trades.parquet"))
    moto.client().put_object(Bucket=bucket, Key=f"fleet/{victim}", Body=b"bit rot", ChecksumAlgorithm="CRC32C")
    capsys.readouterr()
    assert main(["sync", "-c", str(cfg_path), "--verify"]) == 1
    assert f"MISMATCH {victim}" in capsys.readouterr().out
    # the mismatch was forgotten, so the next run (here with --verify again) re-uploads the local file
    assert main(["sync", "-c", str(cfg_path), "--verify"]) == 0
    body = moto.client().get_object(Bucket=bucket, Key=f"fleet/{victim}")["Body"].read()
    local = next((tmp_path / "data" / "segments" / "done").glob("*/trades.parquet")).read_bytes()
    assert body == local


def test_sha256_checksums(tmp_path, moto, proxy, bucket):
    populate(tmp_path, big=True, segments=1)
    cfg_path = write_config(tmp_path, proxy.url, bucket, checksum_algorithm="SHA256")
    assert main(["sync", "-c", str(cfg_path)]) == 0
    key = next(k for k in remote_keys(moto, bucket) if "SOL-USDT" in k)
    client = moto.client()
    head = client.head_object(Bucket=bucket, Key=f"fleet/{key}", ChecksumMode="ENABLED")
    local = tmp_path / "data" / "features" / key.split("features/", 1)[1]
    # the header is the checksum of the local bytes, computed here with hashlib: the whole file's
    # SHA-256, or for a multipart object the SHA-256 of its parts' digests (S3 appends "-<parts>";
    # moto leaves the suffix off)
    body = local.read_bytes()
    value, _, suffix = head["ChecksumSHA256"].partition("-")
    part1 = client.head_object(Bucket=bucket, Key=f"fleet/{key}", PartNumber=1)
    parts = part1.get("PartsCount") or 1
    if parts > 1:
        size = part1["ContentLength"]
        assert parts == -(-len(body) // size) and suffix in ("", str(parts))
        expected = hashlib.sha256(b"".join(hashlib.sha256(body[i:i + size]).digest()
                                           for i in range(0, len(body), size))).digest()
    else:
        expected = hashlib.sha256(body).digest()
    assert base64.b64decode(value) == expected
    assert download_tree(cfg_path, tmp_path / "restore") == local_expected(tmp_path / "data")


def test_dead_endpoint_is_a_clear_error(tmp_path, capsys):
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    populate(tmp_path, segments=1)
    before = tree_digest(tmp_path / "data")
    cfg_path = write_config(tmp_path, f"http://127.0.0.1:{port}", "fluxforge-dead", delete_after_upload=True,
                            max_attempts=2, connect_timeout=2)
    assert main(["sync", "-c", str(cfg_path)]) == 1
    err = capsys.readouterr().err
    assert "cannot reach S3 endpoint" in err and "Traceback" not in err
    after = tree_digest(tmp_path / "data")
    assert {k: v for k, v in after.items() if not k.startswith("state/")} == before
