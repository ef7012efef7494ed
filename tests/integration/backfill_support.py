"""Shared pieces of the backfill tests: a fleet's bronze in S3 (sync layout), per-host replay references.

The bronze is uploaded exactly where `fluxforge sync` puts it
(`<prefix>/bronze/host=H/date=D/<segment>/<file>`, manifest last, via
fluxforge.sync.layout), and every reference is a per-host `fluxforge replay`
(fluxforge.etl.replay) over the same segments and options.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from fluxforge.config import FeatureOptions
from fluxforge.etl.replay import replay
from fluxforge.sync.layout import segment_files
from syncdata import tree_digest

FEATURES = {"hf_emit_interval": 1.0, "bar_durations": [5, 60]}
OPTIONS = FeatureOptions(**FEATURES)


def upload_bronze(client, bucket: str, prefix: str, segments: list[Path]) -> None:
    for seg in segments:
        for f in segment_files(seg):  # manifest last, like sync
            client.upload_file(str(f.path), bucket, f"{prefix}/{f.logical}")


def replay_per_host(fleet: dict[str, list[Path]], out: Path, hosts=None) -> Path:
    for host, segs in sorted(fleet.items()):
        if hosts is None or host in hosts:
            replay(segs, out, OPTIONS, 65536)
    return out


def features(root: Path) -> dict[str, str]:
    """{path: sha256} of the feature files (hf/, bars/): what must equal the replay's."""
    return {k: v for k, v in tree_digest(root).items() if k.startswith(("hf/", "bars/"))}


def download_prefix(client, bucket: str, prefix: str, dest: Path) -> Path:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            out = dest / obj["Key"][len(prefix) + 1:]
            out.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj["Key"], str(out))
    return dest


def write_config(path: Path, endpoint: str | None = None, key: str = "testing", **sync) -> Path:
    data = {"etl": {"features": FEATURES}, "logging": {"format": "json", "level": "WARNING"}}
    if endpoint:
        data["sync"] = {"endpoint_url": endpoint, "region": "us-east-1", "addressing_style": "path",
                        "aws_access_key_id": key, "aws_secret_access_key": "testing", "max_attempts": 6,
                        "workers": 2, "multipart_threshold_mb": 5, "multipart_chunk_mb": 5, **sync}
    path.write_text(yaml.safe_dump(data))
    return path


def rows_in_range(table, start_ms: int, end_ms: int):
    ts = pc.cast(table.column("timestamp"), "int64")
    return table.filter(pc.and_(pc.greater_equal(ts, start_ms), pc.less(ts, end_ms)))


def read(path: Path):
    return pq.read_table(path)
