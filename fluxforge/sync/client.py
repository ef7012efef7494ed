"""The boto3 S3 client and transfer settings built from `sync:` config, and readable S3 errors.

Why here: every S3 caller (upload, verify, download, retention checks, tests,
benchmarks) must get the same endpoint, addressing style, connection pool
(sized to the workers: their transfers plus their verifying HEADs), botocore retry mode (standard/adaptive: retries 500/503/SlowDown
and connection resets with backoff, so there is no hand-written retry loop) and
multipart sizes.  Credentials come from the config (which may itself read the
environment or a systemd credential via `${env:..}` / `${credential:..}`) or
else boto3's standard chain; only the *source* of the credentials is ever logged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ..config import SyncConfig
from ..logs import redact_url_userinfo

MB = 1024 * 1024


class SyncError(Exception):
    """A failure that stops the whole run (bucket missing, credentials refused...): one clear line."""


@dataclass
class S3Target:
    client: Any
    bucket: str
    prefix: str
    credential_source: str

    def key(self, logical: str) -> str:
        """S3 key of a logical path like `bronze/host=h/...` or `features/hf/...`."""
        return f"{self.prefix}/{logical}" if self.prefix else logical

    def logical(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key


def transfer_config(cfg: SyncConfig) -> TransferConfig:
    return TransferConfig(
        multipart_threshold=int(cfg.multipart_threshold_mb * MB),
        multipart_chunksize=int(cfg.multipart_chunk_mb * MB),
        max_concurrency=cfg.workers,
        use_threads=True,
    )


def make_target(cfg: SyncConfig) -> S3Target:
    """A client for the configured endpoint; raises SyncError when sync is unusable."""
    if not cfg.bucket:
        raise SyncError("sync.bucket is not set")
    if (cfg.aws_access_key_id is None) != (cfg.aws_secret_access_key is None):
        raise SyncError("sync.aws_access_key_id and sync.aws_secret_access_key must be set together "
                        "(or neither, to use the standard boto3 credential chain)")
    session = boto3.session.Session(
        aws_access_key_id=cfg.aws_access_key_id,
        aws_secret_access_key=cfg.aws_secret_access_key,
        region_name=cfg.region,
    )
    creds = session.get_credentials()
    if creds is None:
        raise SyncError("no S3 credentials: set sync.aws_access_key_id/aws_secret_access_key "
                        "(packaged install: put the key in /etc/fluxforge/credentials/s3_secret_access_key and write "
                        "\"${credential:fluxforge_s3_secret_access_key}\"), AWS_* environment variables or ~/.aws/credentials")
    botocfg = BotoConfig(
        region_name=cfg.region or "us-east-1",
        s3={"addressing_style": cfg.addressing_style},
        retries={"mode": cfg.retry_mode, "max_attempts": cfg.max_attempts},
        # `workers` transfer threads + `workers` verifier threads (HEAD): one pooled connection each.
        max_pool_connections=2 * cfg.workers,
        connect_timeout=cfg.connect_timeout,
        read_timeout=cfg.read_timeout,
        request_checksum_calculation="when_supported",
        response_checksum_validation="when_supported",
    )
    client = session.client("s3", endpoint_url=cfg.endpoint_url, config=botocfg)
    return S3Target(client=client, bucket=cfg.bucket, prefix=cfg.prefix.strip("/"), credential_source=creds.method)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or str(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return type(exc).__name__


_FATAL = {
    "NoSuchBucket": "bucket {bucket!r} does not exist at {endpoint}",
    "404": "bucket {bucket!r} does not exist at {endpoint}",
    "InvalidAccessKeyId": "S3 rejected the access key (InvalidAccessKeyId) at {endpoint}",
    "SignatureDoesNotMatch": "S3 rejected the secret key (SignatureDoesNotMatch) at {endpoint}",
    "InvalidClientTokenId": "S3 rejected the access key (InvalidClientTokenId) at {endpoint}",
    "ExpiredToken": "the S3 session token has expired ({endpoint})",
    "AccessDenied": "access denied to bucket {bucket!r} at {endpoint} (check the credentials and policy)",
    "403": "access denied to bucket {bucket!r} at {endpoint} (bad credentials or policy)",
    "RequestTimeTooSkewed": "S3 refused the request: the local clock is wrong (is time synchronised?)",
}


def fatal_message(exc: BaseException, target: S3Target) -> str | None:
    """A one-line explanation when `exc` means no upload can succeed, else None (URL userinfo masked)."""
    endpoint = redact_url_userinfo(str(target.client.meta.endpoint_url))
    if isinstance(exc, NoCredentialsError):
        return "no S3 credentials found"
    code = error_code(exc)
    if code in _FATAL:
        return _FATAL[code].format(bucket=target.bucket, endpoint=endpoint)
    if isinstance(exc, BotoCoreError) and "Endpoint" in type(exc).__name__:
        return redact_url_userinfo(f"cannot reach S3 endpoint {endpoint}: {exc}")
    return None


def check_bucket(target: S3Target) -> None:
    """HEAD the bucket once (with retries) so a missing bucket or bad key fails before any upload."""
    try:
        target.client.head_bucket(Bucket=target.bucket)
        return
    except (ClientError, BotoCoreError) as e:
        failure: BaseException = e
    if error_code(failure) in ("400", "403"):
        # A HEAD response has no body, so no error code: one GET tells which key S3 refused and why.
        try:
            target.client.list_objects_v2(Bucket=target.bucket, MaxKeys=1)
        except (ClientError, BotoCoreError) as e:
            failure = e
    raise SyncError(fatal_message(failure, target)
                    or redact_url_userinfo(f"S3 bucket check failed: {error_code(failure)}: {failure}"))
