"""Credentials: systemd credential files and the environment work; bad keys end in one clear line,
nothing is deleted locally, and no secret ever reaches the logs.  moto runs with IAM auth enabled."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import MotoServer  # noqa: E402
from syncdata import bronze_segment, tree_digest, utc_day, fresh_logging  # noqa: E402,F401

from fluxforge.cli import main  # noqa: E402

BUCKET = "fluxforge-auth"


@pytest.fixture(scope="module")
def auth_moto():
    # The first 3 calls are unauthenticated (to create the user, its key and policy); then IAM auth applies.
    with MotoServer(auth_after=3) as m:
        iam = boto3.client("iam", endpoint_url=m.url, region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="pi01")
        key = iam.create_access_key(UserName="pi01")["AccessKey"]
        iam.put_user_policy(UserName="pi01", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        m.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"]).create_bucket(Bucket=BUCKET)
        yield m, key["AccessKeyId"], key["SecretAccessKey"]


def config(tmp_path: Path, url: str, **sync) -> Path:
    data = {"data_dir": str(tmp_path / "data"), "host_id": "pi01", "logging": {"format": "json"},
            "sync": {"enabled": True, "bucket": BUCKET, "endpoint_url": url, "region": "us-east-1",
                     "addressing_style": "path", "require_time_sync": False, "max_attempts": 2, **sync}}
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(data))
    bronze_segment(tmp_path / "data" / "segments", "pi01", 1, utc_day(1))
    return p


def test_systemd_credential_files(tmp_path, auth_moto, monkeypatch, capsys):
    moto, key_id, secret = auth_moto
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "s3_key_id").write_text(key_id + "\n")
    (creds / "s3_secret").write_text(secret + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = config(tmp_path, moto.url, aws_access_key_id="${credential:s3_key_id}",
                 aws_secret_access_key="${credential:s3_secret}")
    assert main(["sync", "-c", str(cfg)]) == 0
    out = capsys.readouterr()
    assert '"uploaded": 5' in out.err
    assert secret not in out.err + out.out
    assert main(["config", "check", "-c", str(cfg)]) == 0
    assert secret not in capsys.readouterr().out


def test_environment_credentials(tmp_path, auth_moto, monkeypatch, capsys):
    moto, key_id, secret = auth_moto
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    cfg = config(tmp_path, moto.url, prefix="envcreds")
    assert main(["sync", "-c", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert '"credentials": "env"' in err and secret not in err


@pytest.mark.parametrize("which, message", [
    ("secret", "rejected the secret key"),
    ("key", "rejected the access key"),
])
def test_bad_credentials_clear_error_nothing_deleted(tmp_path, auth_moto, capsys, which, message):
    moto, key_id, secret = auth_moto
    bad_secret = "x" * 40 if which == "secret" else secret
    bad_key = "AKIAIOSFODNN7EXAMPLE" if which == "key" else key_id
    cfg = config(tmp_path, moto.url, aws_access_key_id=bad_key, aws_secret_access_key=bad_secret,
                 delete_after_upload=True)
    before = tree_digest(tmp_path / "data" / "segments")
    assert main(["sync", "-c", str(cfg)]) == 1
    out = capsys.readouterr()
    assert message in out.err and "Traceback" not in out.err
    assert bad_secret not in out.err + out.out and secret not in out.err + out.out
    assert tree_digest(tmp_path / "data" / "segments") == before


def test_half_a_key_pair_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "sync": {
        "enabled": True, "bucket": "b", "aws_access_key_id": "AKIA", "require_time_sync": False}}))
    assert main(["sync", "-c", str(cfg)]) == 1
    assert "aws_access_key_id and sync.aws_secret_access_key must be set together" in capsys.readouterr().err
