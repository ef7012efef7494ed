"""Local computation of the S3 flexible checksums, to verify an uploaded object by HEAD.

Why: S3 stores a CRC32C/SHA-256/... checksum with each object (computed from
what it received) and returns it on `HEAD ... ChecksumMode=ENABLED`.  Comparing
it with a checksum we compute independently from the local file proves the
bytes in the bucket are the bytes on disk.  A multipart object carries a
*composite* checksum (checksum of the parts' checksums, suffixed `-<parts>`),
so we compute both forms in one pass over the file, using the part size the
transfer manager used.
"""
from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

from s3transfer.utils import ChunksizeAdjuster

READ = 1024 * 1024


class _Crc:
    def __init__(self, fn):
        self.fn, self.value = fn, 0

    def update(self, data: bytes) -> None:
        self.value = self.fn(data, self.value)

    def digest(self) -> bytes:
        return (self.value & 0xFFFFFFFF).to_bytes(4, "big")


def _crc32c(data: bytes, prev: int) -> int:
    from awscrt import checksums
    return checksums.crc32c(data, prev)


def new_hasher(algorithm: str):
    if algorithm == "CRC32C":
        return _Crc(_crc32c)
    if algorithm == "CRC32":
        return _Crc(zlib.crc32)
    if algorithm in ("SHA256", "SHA1"):
        return hashlib.new(algorithm.lower(), usedforsecurity=False)
    raise ValueError(f"unsupported checksum algorithm {algorithm!r}")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class FileChecksum:
    algorithm: str
    full: str        # checksum of the whole object (PutObject, or FULL_OBJECT multipart)
    composite: str   # checksum of the part checksums ('' when single-part)
    parts: int
    part_size: int

    def matches(self, remote: str | None, checksum_type: str | None = None) -> bool:
        """Compare with the value of `Checksum<ALG>` from a HEAD (`xxx` or `xxx-<parts>`)."""
        if not remote:
            return False
        value, _, count = remote.partition("-")
        if checksum_type == "FULL_OBJECT" or not self.part_size:
            return value == self.full and (not count or int(count) == 1)
        return value == self.composite and (not count or int(count) == self.parts)


def part_size_for(size: int, threshold: int, chunksize: int) -> int:
    """Part size s3transfer uses for a file of `size` bytes (0 = single PutObject)."""
    if size < threshold:
        return 0
    return ChunksizeAdjuster().adjust_chunksize(chunksize, size)


def file_checksum(path: Path, algorithm: str, part_size: int) -> FileChecksum:
    """One pass over the file: the full checksum and, if part_size, the composite one."""
    full = new_hasher(algorithm)
    part_digests = []
    part = new_hasher(algorithm)
    in_part = 0
    with open(path, "rb") as f:
        while True:
            want = READ if not part_size else min(READ, part_size - in_part)
            data = f.read(want)
            if not data:
                break
            full.update(data)
            if part_size:
                part.update(data)
                in_part += len(data)
                if in_part == part_size:
                    part_digests.append(part.digest())
                    part, in_part = new_hasher(algorithm), 0
    if part_size and in_part:
        part_digests.append(part.digest())
    composite = ""
    if part_size:
        combined = new_hasher(algorithm)
        combined.update(b"".join(part_digests))
        composite = _b64(combined.digest())
    return FileChecksum(algorithm, _b64(full.digest()), composite, max(len(part_digests), 1), part_size)
