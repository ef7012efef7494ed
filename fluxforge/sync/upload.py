"""Upload files with s3transfer and verify each object by HEAD before recording it.

Why one TransferManager for the whole batch: it shares `workers` threads between
whole files and the parts of big files (multipart per `TransferConfig`), on a
connection pool of the same size.  Each finished upload is verified on a
verifier thread: HEAD with ChecksumMode=ENABLED must return the local size and
the locally computed flexible checksum (full or composite).  Only then is the
file recorded in the state db (from the calling thread), so a crash or a
failure at any point leaves it to be uploaded again by the next run.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

from boto3.s3.transfer import create_transfer_manager
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.subscribers import BaseSubscriber

from ..config import SyncConfig
from ..logs import get_logger
from .checksums import file_checksum, part_size_for
from .client import S3Target, SyncError, error_code, fatal_message, transfer_config
from .layout import LocalFile
from .state import UploadState

log = get_logger("fluxforge.sync")


class ChecksumMismatch(Exception):
    pass


@dataclass
class UploadOutcome:
    uploaded: list[LocalFile] = field(default_factory=list)
    failed: list[tuple[LocalFile, str]] = field(default_factory=list)
    bytes: int = 0


class _ProgressSubscriber(BaseSubscriber):
    def __init__(self, progress: Any, lock: Lock):
        self.progress, self.lock = progress, lock

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        with self.lock:
            self.progress.advance(bytes_transferred)


def head_checksum(target: S3Target, key: str, algorithm: str) -> tuple[int, str | None, str | None]:
    """(ContentLength, Checksum<ALG> value, ChecksumType) of the object."""
    head = target.client.head_object(Bucket=target.bucket, Key=key, ChecksumMode="ENABLED")
    return head["ContentLength"], head.get(f"Checksum{algorithm}"), head.get("ChecksumType")


class Uploader:
    def __init__(self, target: S3Target, state: UploadState, cfg: SyncConfig, progress: Any = None):
        self.target, self.state, self.cfg, self.progress = target, state, cfg, progress
        self.tconfig = transfer_config(cfg)
        self._lock = Lock()

    def _verify(self, f: LocalFile, future: Any, part_size: int, size: int) -> str:
        """Wait for the upload, then prove the object matches the local file; returns the remote checksum."""
        future.result()
        alg = self.cfg.checksum_algorithm
        local = file_checksum(f.path, alg, part_size)
        length, remote, ctype = head_checksum(self.target, self.target.key(f.logical), alg)
        if length != size or not local.matches(remote, ctype):
            raise ChecksumMismatch(f"s3://{self.target.bucket}/{self.target.key(f.logical)}: size {length} / {alg} {remote} "
                                   f"in S3 but {size} / {local.composite or local.full} locally")
        return remote or ""

    def upload(self, files: list[LocalFile]) -> UploadOutcome:
        """Upload and verify `files`; records each verified file.  Raises SyncError on a run-ending error."""
        out = UploadOutcome()
        if not files:
            return out
        alg = self.cfg.checksum_algorithm
        subscribers = [_ProgressSubscriber(self.progress, self._lock)] if self.progress is not None else []
        manager = create_transfer_manager(self.target.client, self.tconfig)
        jobs, transfers = {}, []
        verifiers = ThreadPoolExecutor(self.cfg.workers, thread_name_prefix="verify")
        try:
            for f in files:
                try:
                    st = f.path.stat()
                except FileNotFoundError:
                    continue  # removed since the scan (e.g. by retention): nothing to ship
                part = part_size_for(st.st_size, self.tconfig.multipart_threshold, self.tconfig.multipart_chunksize)
                fut = manager.upload(str(f.path), self.target.bucket, self.target.key(f.logical),
                                     extra_args={"ChecksumAlgorithm": alg}, subscribers=subscribers)
                transfers.append(fut)
                jobs[verifiers.submit(self._verify, f, fut, part, st.st_size)] = (f, st, part)
            for done in as_completed(jobs):
                f, st, part = jobs[done]
                try:
                    remote = done.result()
                except (ClientError, BotoCoreError) as e:
                    fatal = fatal_message(e, self.target)
                    if fatal:
                        raise SyncError(fatal) from None
                    out.failed.append((f, f"{error_code(e)}: {e}"))
                    log.error("upload_failed", file=f.logical, error=error_code(e), detail=str(e))
                    continue
                except ChecksumMismatch as e:
                    out.failed.append((f, str(e)))
                    log.error("upload_checksum_mismatch", file=f.logical, detail=str(e))
                    continue
                except FileNotFoundError:
                    # moved since the scan (the ETL claimed the segment, retention freed it):
                    # the next run ships it from where it is now
                    log.info("file_moved_during_upload", file=f.logical)
                    continue
                except OSError as e:
                    out.failed.append((f, str(e)))
                    log.error("upload_failed", file=f.logical, error=type(e).__name__, detail=str(e))
                    continue
                now = f.path.stat() if f.path.exists() else None
                if now is None or (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                    log.warning("file_changed_during_upload", file=f.logical)
                    continue
                self.state.record(f.logical, st, alg, remote, part, f.covers())
                out.uploaded.append(f)
                out.bytes += st.st_size
        except BaseException:
            # cancelled, blocked verifiers return at once.  Each transfer is cancelled itself: s3transfer
            # 0.19.3's shutdown(cancel=True) passes its arguments shifted and raises TypeError instead
            with _cancelled_reads_unprinted():
                for t in transfers:
                    t.cancel()
                manager.shutdown()
            raise
        finally:
            verifiers.shutdown(wait=True)
        manager.shutdown()
        return out


@contextmanager
def _cancelled_reads_unprinted() -> Iterator[None]:
    """While transfers are cancelled: not a traceback in the journal for each body read a cancel cut.

    A cancelled transfer's body raises CancelledError on its next read.  When that read is awscrt's
    (botocore signs with the CRT when it is installed, and over plain HTTP -- a LAN MinIO -- the
    signer reads the body to hash it), awscrt prints the exception through sys.excepthook with its
    traceback, after the run's one-line error is decided.  Other exceptions still reach the hook."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if not issubclass(kind, CancelledError):
            previous(kind, value, tb)
    sys.excepthook = hook
    try:
        yield
    finally:
        sys.excepthook = previous
