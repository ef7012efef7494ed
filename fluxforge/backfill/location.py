"""A backfill SOURCE or DEST: a local directory or `s3://bucket/prefix`, and its S3 client.

Why through `sync`'s client: the endpoint, addressing style, retry mode (503 /
SlowDown / connection resets retried with backoff by botocore) and checksum
settings must be the ones an operator configured and tested for `fluxforge
sync`; only the bucket and prefix come from the URL.  The `SyncConfig` travels to
workers (it is a plain pydantic model); with `--address` of a remote cluster the
credentials are left out of it and each worker uses its own (boto3's chain).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import SyncConfig
from ..sync.client import S3Target, make_target


@dataclass(frozen=True)
class Location:
    """Either `path` (local) or `bucket` + `prefix` (S3) with the `sync` settings to reach it."""

    path: Path | None = None
    bucket: str | None = None
    prefix: str = ""
    s3: SyncConfig | None = None

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/") if self.is_s3 else str(self.path)

    def target(self) -> S3Target:
        """A fresh client (one per process: boto3 clients are not shared across processes)."""
        assert self.s3 is not None
        return make_target(self.s3)

    def without_credentials(self) -> "Location":
        if self.s3 is None:
            return self
        s3 = self.s3.model_copy(update={"aws_access_key_id": None, "aws_secret_access_key": None})
        return Location(self.path, self.bucket, self.prefix, s3)


def parse_location(text: str, sync: SyncConfig) -> Location:
    """`s3://bucket/prefix` (prefix may be empty) or a local path."""
    if not text.startswith("s3://"):
        return Location(path=Path(text))
    bucket, _, prefix = text[5:].partition("/")
    if not bucket:
        raise ValueError(f"{text}: no bucket in the S3 URL (s3://bucket/prefix)")
    prefix = prefix.strip("/")
    return Location(bucket=bucket, prefix=prefix, s3=sync.model_copy(update={"bucket": bucket, "prefix": prefix}))
