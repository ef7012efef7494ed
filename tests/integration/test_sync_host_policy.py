"""The per-host IAM policy of docs/sync.md, enforced by moto's IAM: a host's key syncs its own data
(uploads, verification, multipart clean-up, superseded-part deletion) and cannot write another host's."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import MotoServer  # noqa: E402
from syncdata import bronze_segment, feature_day, fresh_logging, make_config, utc_day  # noqa: E402,F401

from fluxforge.cli import main  # noqa: E402
from fluxforge.maintenance.compaction import compact  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BUCKET = "my-fluxforge-bucket"  # the names the documented example uses


def documented_policy() -> dict:
    text = (REPO / "docs" / "sync.md").read_text()
    policy = json.loads(re.search(r"```json\n(.*?)```", text, re.S).group(1))
    # moto names HEAD bucket "s3:HeadBucket"; AWS authorizes it by s3:ListBucket, which the policy has
    bucket = next(st for st in policy["Statement"] if "s3:ListBucket" in st["Action"])
    bucket["Action"].append("s3:HeadBucket")
    return policy


@pytest.fixture(scope="module")
def fleet_moto():
    # 6 unauthenticated calls create an admin and pi01 (with the documented policy); then IAM auth applies.
    with MotoServer(auth_after=6) as m:
        iam = boto3.client("iam", endpoint_url=m.url, region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        keys = {}
        for user, policy in (("admin", {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}), ("pi01", documented_policy())):
            iam.create_user(UserName=user)
            keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
            iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
        admin = m.client(key=keys["admin"]["AccessKeyId"], secret=keys["admin"]["SecretAccessKey"])
        admin.create_bucket(Bucket=BUCKET)
        yield m, keys


def _sync_config(tmp_path, data, host: str, key: dict, moto, **sync) -> str:
    """A config syncing `data` as `host` with IAM access key `key` to the moto bucket; its path."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(data), "host_id": host, "logging": {"format": "json"},
        "sync": {"enabled": True, "bucket": BUCKET, "prefix": "fleet", "endpoint_url": moto.url,
                 "region": "us-east-1", "addressing_style": "path", "require_time_sync": False,
                 "aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"], **sync}}))
    return str(path)


def _with_segments(tmp_path, host: str, n: int):
    """A data dir whose host wrote `n` bronze segments three days ago: (data dir, its config)."""
    data = tmp_path / "data"
    cfg = make_config(data)
    for i in range(n):
        bronze_segment(cfg.segments_dir, host, i + 1, utc_day(3).replace(hour=i), rows=300, seed=i)
    return data, cfg


def test_documented_policy_lets_a_host_sync_its_own_lane_only(tmp_path, fleet_moto, capsys):
    moto, keys = fleet_moto
    k = keys["pi01"]
    data, cfg = _with_segments(tmp_path, "pi01", 3)
    feature_day(cfg.features_dir, utc_day(3), segments=6, rows_per_segment=100)
    cfg_path = _sync_config(tmp_path, data, "pi01", k, moto, max_attempts=2)
    assert main(["sync", "-c", str(cfg_path)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    # compaction replaces parts: the next sync deletes the superseded parts, within pi01's names
    assert compact(make_config(data)).groups > 0
    assert main(["sync", "-c", str(cfg_path)]) == 0, capsys.readouterr().err
    assert int(re.search(r'"superseded_deleted": (\d+)', capsys.readouterr().err).group(1)) > 0

    s3 = moto.client(key=k["AccessKeyId"], secret=k["SecretAccessKey"])
    own = next(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="fleet/bronze/host=pi01/")["Contents"])
    for key in ("fleet/bronze/host=pi02/date=2020-01-01/seg-pi02-20200101T000000Z-000001/trades.parquet",
                "fleet/features/hf/exchange=binance/symbol=BTC-USDT/date=2020-01-01/part-seg-pi02-20200101T000000Z-000001.parquet",
                "fleet/../escape", "elsewhere/x"):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        assert e.value.response["Error"]["Code"] == "AccessDenied", key
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=BUCKET, Key=own)  # a stolen key cannot erase its own host's bronze either
    assert e.value.response["Error"]["Code"] == "AccessDenied"


def test_a_key_used_for_another_host_fails_cleanly_with_uploads_in_flight(tmp_path, fleet_moto, capsys):
    """pi01's key on a host configured as pi02: every upload is denied while others are in flight.
    The run ends with the one-line access error and exit 1.  It must not end with a traceback:
    s3transfer 0.19.3's shutdown(cancel=True) raised TypeError when transfers were still running."""
    moto, keys = fleet_moto
    k = keys["pi01"]
    data, _cfg = _with_segments(tmp_path, "pi02", 8)
    cfg_path = _sync_config(tmp_path, data, "pi02", k, moto, max_attempts=1, workers=4)
    assert main(["sync", "-c", str(cfg_path)]) == 1
    err = capsys.readouterr().err
    assert "sync failed: access denied to bucket" in err and "Traceback" not in err, err[-2000:]
