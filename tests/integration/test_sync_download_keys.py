"""`fluxforge sync --download` writes only keys of the documented layout, and only inside `--to`.

Hostile keys are put into moto's server with real boto3, exactly as a holder of a
stolen PutObject key could, and the restore must refuse each with a listed reason
and write nothing outside the destination.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import moto  # noqa: E402,F401
from syncdata import fresh_logging  # noqa: E402,F401
from test_sync import bucket, write_config  # noqa: E402,F401

from fluxforge.cli import main  # noqa: E402
from fluxforge.sync.restore_keys import RefusedKey, check_logical  # noqa: E402

GOOD = {
    "bronze/host=pi01/date=2020-01-01/seg-pi01-20200101T000000Z-000001/trades.parquet": b"bronze",
    "bronze/host=pi01/date=2020-01-01/seg-pi01-20200101T000000Z-000001/manifest.json": b"{}",
    "features/hf/exchange=binance/symbol=BTC-USDT/date=2020-01-01/part-seg-pi01-20200101T000000Z-000001.parquet": b"hf",
    "features/bars/interval=60s/exchange=binance/symbol=%E5%B8%81-USDT/date=2020-01-01/part-a--b.parquet": b"bars",
}

# key below the prefix -> words the refusal reason must contain
HOSTILE = {
    "../../escape-dotdot": "'..'",
    "bronze/../../../escape-mid": "'..'",
    "features\\..\\..\\escape-backslash.parquet": "backslash",
    "bronze/host=pi01/": "folder marker",
    "features/./hf/x=1/a.parquet": "'.'",
    "features//hf/a.parquet": "empty",
    "notes.txt": "outside the documented layout",
    "bronze/host=pi02/date=2020-01-01/seg-pi01-20200101T000000Z-000001/trades.parquet": "does not match",
    "bronze/host=pi01/date=2020-01-01/seg-pi01-20200101T000000Z-000001/evil.sh": "unknown segment file",
    "features/hf/exchange=binance/run.sh": "not a visible .parquet",
    "features/hf/not-a-partition/a.parquet": "bad partition",
}


def test_hostile_keys_are_refused_and_nothing_lands_outside(tmp_path, moto, bucket, capsys):
    s3 = moto.client()
    for logical, body in GOOD.items():
        s3.put_object(Bucket=bucket, Key=f"fleet/{logical}", Body=body)
    # an absolute key aimed at this test's own directory (so a broken restore writes nowhere else)
    hostile = {**HOSTILE, str(tmp_path / "escape-absolute"): "absolute"}
    for logical in hostile:
        s3.put_object(Bucket=bucket, Key=f"fleet/{logical}", Body=b"pwned")
    listed = {o["Key"][len("fleet/"):] for o in s3.list_objects_v2(Bucket=bucket, Prefix="fleet/")["Contents"]}
    assert set(hostile) <= listed  # the server keeps the keys verbatim, so the restore really sees them

    work = tmp_path / "a" / "b"
    dest = work / "restore"
    dest.mkdir(parents=True)
    cfg_path = write_config(tmp_path, moto.url, bucket)
    capsys.readouterr()
    assert main(["sync", "-c", str(cfg_path), "--download", "", "--to", str(dest)]) == 1
    out = capsys.readouterr().out

    written = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert written == GOOD
    pwned = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == b"pwned"]
    assert pwned == []
    refused = [line for line in out.splitlines() if line.startswith("REFUSED ")]
    assert len(refused) == len(hostile)
    for logical, reason in hostile.items():
        assert any(repr(f"fleet/{logical}") in line and reason in line for line in refused), (logical, refused)


def test_a_symlink_inside_the_destination_does_not_lead_out(tmp_path, moto, bucket, capsys):
    key = "bronze/host=pi01/date=2020-01-01/seg-pi01-20200101T000000Z-000001/trades.parquet"
    moto.client().put_object(Bucket=bucket, Key=f"fleet/{key}", Body=b"bronze")
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "restore"
    dest.mkdir()
    (dest / "bronze").symlink_to(outside)
    cfg_path = write_config(tmp_path, moto.url, bucket)
    assert main(["sync", "-c", str(cfg_path), "--download", "bronze/", "--to", str(dest)]) == 1
    assert "resolves outside" in capsys.readouterr().out
    assert list(outside.rglob("*")) == []


@pytest.mark.parametrize("logical", list(GOOD))
def test_documented_layout_is_accepted(logical):
    check_logical(logical)


@pytest.mark.parametrize("logical", ["", "bronze", "features/hf", "bronze/host=pi01/date=2020-01-01/x/trades.parquet",
                                     "features/hf/a\x00b=1/a.parquet", "features/HF/x=1/a.parquet"])
def test_malformed_keys_are_refused(logical):
    with pytest.raises(RefusedKey):
        check_logical(logical)
