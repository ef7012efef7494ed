"""A content digest of a stream of Arrow record batches that ignores how the rows are chunked.

Why: compaction must prove that a merged Parquet file holds exactly the rows of
its inputs, in order, without keeping a whole day in memory on a 1 GB Pi.  The
digest re-slices the row stream into fixed windows and hashes the Arrow IPC
encoding of each window, so the same rows give the same digest whether they
come from twenty small files or one big one.  Parquet decoding zero-fills the
slots under nulls, so batches decoded from Parquet encode identically; hash
only decoded Parquet data (or data derived from it), never hand-built arrays.
"""
from __future__ import annotations

import hashlib
import io
from typing import Iterable

import pyarrow as pa

WINDOW_ROWS = 16384  # ~20 MB of 150 float64 columns per window: small next to a 1 GB Pi


class TableDigest:
    """Feed batches with `update()`; `hexdigest()` is a sha256 over canonical windows."""

    def __init__(self, window_rows: int = WINDOW_ROWS):
        self.window_rows = window_rows
        self.rows = 0
        self._hash = hashlib.sha256()
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._schema: pa.Schema | None = None

    def update(self, batch: pa.RecordBatch) -> None:
        if self._schema is None:
            self._schema = batch.schema.remove_metadata()
        self.rows += batch.num_rows
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self.window_rows:
            table = pa.Table.from_batches(self._pending)
            self._emit(table.slice(0, self.window_rows))
            rest = table.slice(self.window_rows)
            self._pending = rest.to_batches()
            self._pending_rows = rest.num_rows

    def update_all(self, batches: Iterable[pa.RecordBatch]) -> "TableDigest":
        for b in batches:
            self.update(b)
        return self

    def _emit(self, table: pa.Table) -> None:
        assert self._schema is not None
        arrays = [pa.concat_arrays(col.chunks) if col.num_chunks else pa.array([], col.type)
                  for col in table.columns]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self._schema)
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, self._schema) as writer:
            writer.write_batch(batch)
        self._hash.update(sink.getvalue())

    def hexdigest(self) -> str:
        if self._pending_rows:
            self._emit(pa.Table.from_batches(self._pending))
            self._pending, self._pending_rows = [], 0
        return self._hash.hexdigest()
