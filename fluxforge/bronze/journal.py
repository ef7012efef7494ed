"""Per-channel Arrow IPC journals of the active segment (DESIGN decision 2).

Why a journal and not Parquet: Parquet is only readable once its footer is
written, so a crash would lose the whole file.  An Arrow IPC *stream* is a
sequence of self-delimiting messages: after a SIGKILL or a power cut every
complete zstd batch can still be read and only a torn tail is lost.  Each
`write_batch()` appends one batch and fsyncs, so at most one flush interval is
ever at risk.

We serialise batches into memory first and `os.write` the bytes ourselves, so
that when the disk fills up half-way through a batch we can `ftruncate` back to
the last complete batch: a failed write never leaves garbage *inside* the
journal, only (after a crash) at its tail, which `read_journal` drops and counts.
"""
from __future__ import annotations

import errno
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa

IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")
_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"


class JournalUnreadable(Exception):
    """The journal's schema header is damaged: nothing in it can be trusted."""


class _MemorySink(io.RawIOBase):
    """File-like sink for pyarrow's stream writer; we take the bytes after each batch."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.buf += b
        return len(b)

    def take(self) -> bytes:
        data = bytes(self.buf)
        self.buf.clear()
        return data


def schema_header(schema: pa.Schema) -> bytes:
    """The exact bytes a journal of `schema` starts with (its IPC schema message)."""
    sink = pa.BufferOutputStream()
    pa.ipc.new_stream(sink, schema, options=IPC_OPTIONS).close()
    data = sink.getvalue().to_pybytes()
    return data[: -len(_EOS)]


class JournalWriter:
    """Append-only, fsync'd Arrow IPC stream of one channel.

    The file is created with its schema header already durable, so a journal on
    disk is always readable up to its last complete batch.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema):
        self.path = Path(path)
        self.schema = schema
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._header = schema_header(schema)
        self._sink = _MemorySink()
        self._writer = pa.ipc.new_stream(self._sink, schema, options=IPC_OPTIONS)
        self._header_pending = True  # pyarrow emits the schema with the first batch
        self.size = 0
        self.rows = 0
        self.batches = 0
        self._append(self._header)
        os.fsync(self._fd)

    def _append(self, data: bytes) -> None:
        """Write all of `data` at the end; on failure truncate back and re-raise."""
        good = self.size
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            os.ftruncate(self._fd, good)
            os.lseek(self._fd, good, os.SEEK_SET)
            raise
        self.size = good + len(data)

    def write_batch(self, batch: pa.RecordBatch, sync: bool = True) -> int:
        """Append one compressed batch (and fsync); returns bytes written.

        On ENOSPC (or any OSError) the journal is rolled back to its previous
        size and the error propagates: the caller drops the batch with accounting.
        """
        try:
            if batch.schema != self.schema:
                batch = batch.cast(self.schema)
            self._writer.write_batch(batch)
        except BaseException:
            # nothing reached the file; start the in-memory stream afresh so no partial bytes linger
            self._sink = _MemorySink()
            self._writer = pa.ipc.new_stream(self._sink, self.schema, options=IPC_OPTIONS)
            self._header_pending = True
            raise
        data = self._sink.take()
        if self._header_pending:
            data = data[len(self._header):]
            self._header_pending = False
        before = self.size
        self._append(data)
        if sync:
            self.sync()
        self.rows += batch.num_rows
        self.batches += 1
        return self.size - before

    def sync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as e:
            if e.errno != errno.EINVAL:  # some file systems lack fdatasync
                raise
            os.fsync(self._fd)

    def close(self) -> None:
        """fsync and close the file (no EOS marker: a journal never needs one)."""
        if self._fd >= 0:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1


@dataclass
class JournalScan:
    """What reading a journal found, filled in as `iter_journal` goes."""

    rows: int = 0
    batches: int = 0
    torn_batches: int = 0  # 1 when bytes after the last complete batch were dropped
    torn_bytes: int = 0
    valid_bytes: int = 0


def iter_journal(path: str | os.PathLike, schema: pa.Schema, scan: JournalScan) -> Iterator[pa.RecordBatch]:
    """Yield every complete batch of a (possibly torn or damaged) journal, one at a time.

    The file is walked message by message: each IPC message's declared
    metadata and body lengths are checked against the bytes left *before*
    anything is read or decoded, so a flipped length byte can never ask for a
    90 TB allocation.  Batches are read and decoded one by one, so a large
    journal never has to fit in RAM (plain reads, not a memory map: a live
    journal may shrink under a reader when the collector rolls back a write).
    Whatever does not frame or decode -- a batch cut short by a crash, zeros
    left by a power cut, a damaged byte -- ends the journal there: the rest is
    dropped and recorded in `scan.torn_batches`/`scan.torn_bytes`.  A file that
    is only a prefix of the schema header (crash while creating it) is an
    empty journal.  A damaged or foreign schema header raises
    `JournalUnreadable` before the first batch.
    """
    path = Path(path)
    size = path.stat().st_size
    header = schema_header(schema)
    if size <= len(header):
        data = path.read_bytes()
        if header.startswith(data):
            if 0 < size < len(header):
                scan.torn_batches, scan.torn_bytes = 1, size
            else:
                scan.valid_bytes = size
            return
    with open(path, "rb") as f:
        data = _read_frame(f, 0, size)
        try:
            if data is None:
                raise ValueError("no complete schema message")
            got = pa.ipc.read_schema(pa.ipc.read_message(pa.py_buffer(data)))
        except Exception as e:  # noqa: BLE001 -- any decode failure of the header: unreadable
            raise JournalUnreadable(f"{path.name}: schema header unreadable: {e}") from None
        if not got.equals(schema):
            raise JournalUnreadable(f"{path.name}: schema does not match the {path.stem} channel: {got}")
        scan.valid_bytes = len(data)
        while True:
            data = _read_frame(f, scan.valid_bytes, size)
            if data is None:
                break  # end of stream, or a length that does not fit: torn from here
            try:
                batch = pa.ipc.read_record_batch(pa.ipc.read_message(pa.py_buffer(data)), schema)
                batch.validate(full=True)
            except Exception:  # noqa: BLE001 -- any decode failure (Arrow raises many kinds): torn from here
                break
            scan.valid_bytes += len(data)
            scan.rows += batch.num_rows
            scan.batches += 1
            yield batch
    rest = size - scan.valid_bytes
    if rest and not (rest == len(_EOS) and _read_at(path, scan.valid_bytes, rest) == _EOS):
        scan.torn_batches, scan.torn_bytes = 1, rest


class JournalTail:
    """Complete batches appended to a live journal since the last call (the ETL's live path).

    Same framing and decoding as `iter_journal` (what recovery keeps), read from
    where the previous call stopped: a batch still being written, or anything that
    does not decode, is left for a later call -- a torn tail is never returned, and
    a batch is returned once only.  `rows` counts the rows returned so far, which is
    also the row number the next batch starts at in the finished Parquet file.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema):
        self.path = Path(path)
        self.schema = schema
        self.offset = 0  # bytes consumed: header + returned batches
        self.rows = 0

    def read(self, max_rows: int | None = None) -> list[pa.RecordBatch]:
        """New complete batches (at least one if any, then up to `max_rows` rows); FileNotFoundError
        once the journal is gone (finished); JournalUnreadable on a damaged header."""
        size = self.path.stat().st_size
        out: list[pa.RecordBatch] = []
        if size <= self.offset:
            return out  # nothing appended since (the common case between two flushes)
        with open(self.path, "rb") as f:
            if self.offset == 0:
                data = _read_frame(f, 0, size)
                if data is None:
                    return out  # header not complete yet
                try:
                    got = pa.ipc.read_schema(pa.ipc.read_message(pa.py_buffer(data)))
                except Exception as e:  # noqa: BLE001 -- any decode failure of the header: unreadable
                    raise JournalUnreadable(f"{self.path.name}: schema header unreadable: {e}") from None
                if not got.equals(self.schema):
                    raise JournalUnreadable(f"{self.path.name}: schema does not match the {self.path.stem} channel")
                self.offset = len(data)
            taken = 0
            while max_rows is None or not out or taken < max_rows:
                data = _read_frame(f, self.offset, size)
                if data is None:
                    break
                try:
                    batch = pa.ipc.read_record_batch(pa.ipc.read_message(pa.py_buffer(data)), self.schema)
                    batch.validate(full=True)
                except Exception:  # noqa: BLE001 -- as iter_journal: torn (or not yet whole) from here
                    break
                self.offset += len(data)
                self.rows += batch.num_rows
                taken += batch.num_rows
                out.append(batch)
        return out


def _read_frame(f, offset: int, size: int) -> bytes | None:
    """The whole IPC message at `offset`, read only once its declared lengths fit in `size`; else None.

    Encapsulated format: [0xFFFFFFFF] int32 metadata length, a flatbuffer
    `Message` whose `bodyLength` gives the body that follows.  A zero metadata
    length is the end-of-stream mark.
    """
    f.seek(offset)
    head = f.read(8)
    if len(head) < 8:
        return None
    prefix = 8 if head[:4] == b"\xff\xff\xff\xff" else 4
    meta_len = int.from_bytes(head[prefix - 4:prefix], "little", signed=True)
    if meta_len <= 0 or prefix + meta_len > size - offset:
        return None
    f.seek(offset + prefix)
    meta = f.read(meta_len)
    body = _body_length(meta) if len(meta) == meta_len else None
    if body is None or body < 0 or prefix + meta_len + body > size - offset:
        return None
    f.seek(offset)
    data = f.read(prefix + meta_len + body)
    return data if len(data) == prefix + meta_len + body else None


def _body_length(meta: bytes) -> int | None:
    """`Message.bodyLength` from flatbuffer bytes; None when an offset points outside `meta`."""
    n = len(meta)

    def u(pos: int, width: int, signed: bool = False) -> int | None:
        if pos < 0 or pos + width > n:
            return None
        return int.from_bytes(meta[pos:pos + width], "little", signed=signed)

    table = u(0, 4)
    soff = None if table is None else u(table, 4, signed=True)
    if table is None or soff is None:
        return None
    vtable = table - soff
    vsize = u(vtable, 2)
    if vsize is None or vsize < 4:
        return None
    field = 4 + 2 * 3                       # bodyLength is the Message table's 4th field
    if field + 2 > vsize:
        return 0                            # absent: no body
    off = u(vtable + field, 2)
    if off is None:
        return None
    return 0 if off == 0 else u(table + off, 8, signed=True)


def _read_at(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def read_journal(path: str | os.PathLike, schema: pa.Schema) -> tuple[pa.Table, JournalScan]:
    """The whole journal as a Table (complete batches only) and what the scan found."""
    scan = JournalScan()
    batches = list(iter_journal(path, schema, scan))
    return pa.Table.from_batches(batches, schema), scan
