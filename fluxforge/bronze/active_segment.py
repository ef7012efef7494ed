"""The segment being written: one directory in active/ with a journal per channel.

Why its own type: creation must be atomic too.  The directory is built under a
hidden temp name with every channel's schema header fsync'd, then renamed into
active/, so recovery never meets a half-created segment -- only journals whose
tail may be torn.  It holds a journal per channel the collector records
(`schemas.segment_channels`); finishing makes a Parquet file of each journal
it finds, so a segment's files say what it recorded.  Finishing (journals -> Parquet -> ready/) lives in
`fluxforge.bronze.finish` because recovery needs it without a writer.
"""
from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Iterable

import pyarrow as pa

from .schemas import CHANNEL_SCHEMAS, channel_file
from ..fsio import durable_rename, fsync_dir
from .journal import JournalWriter
from .segments import SegmentId, SegmentStore


class ActiveSegment:
    """Journals of all channels (orderbook, trades, ticker, events) of one segment."""

    def __init__(self, store: SegmentStore, seg_id: SegmentId, path: Path, journals: dict[str, JournalWriter]):
        self.store = store
        self.id = seg_id
        self.path = path
        self.journals = journals
        self.opened_monotonic = time.monotonic()
        self.closed = False

    @classmethod
    def create(cls, store: SegmentStore, host: str, seq: int | None = None,
               when: datetime | None = None, channels: Iterable[str] | None = None) -> "ActiveSegment":
        """A new segment in active/ with an empty journal for each of `channels` (default: all)."""
        channels = list(CHANNEL_SCHEMAS if channels is None else channels)
        store.ensure()
        seq = seq if seq is not None else store.next_seq()
        store.record_seq(seq)
        seg_id = SegmentId.new(host, seq, when)
        final = store.path("active", seg_id)
        tmp = final.with_name(f".{final.name}.creating")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        journals: dict[str, JournalWriter] = {}
        try:
            for channel in channels:
                journals[channel] = JournalWriter(tmp / channel_file(channel, finished=False), CHANNEL_SCHEMAS[channel])
            fsync_dir(tmp)
            durable_rename(tmp, final)
        except BaseException:
            for j in journals.values():
                j.close()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for channel, j in journals.items():
            j.path = final / j.path.name
        return cls(store, seg_id, final, journals)

    @property
    def size(self) -> int:
        """Bytes in the journals (compressed), for size-based rotation."""
        return sum(j.size for j in self.journals.values())

    @property
    def rows(self) -> int:
        return sum(j.rows for j in self.journals.values())

    @property
    def age(self) -> float:
        return time.monotonic() - self.opened_monotonic

    def write(self, channel: str, batch: pa.RecordBatch, sync: bool = True) -> int:
        """Append a batch to a channel's journal; raises OSError (journal rolled back) on failure.

        A channel the segment was not created with gets its journal now (rows of it are never
        refused; the directory entry is made durable before the batch)."""
        journal = self.journals.get(channel)
        if journal is None:
            journal = JournalWriter(self.path / channel_file(channel, finished=False), CHANNEL_SCHEMAS[channel])
            fsync_dir(self.path)
            self.journals[channel] = journal
        return journal.write_batch(batch, sync=sync)

    def sync(self) -> None:
        for j in self.journals.values():
            j.sync()

    def close(self) -> None:
        """Close the journals (fsync'd); the directory stays in active/ for finishing."""
        if not self.closed:
            for j in self.journals.values():
                j.close()
            self.closed = True


def remove_abandoned_creations(store: SegmentStore) -> list[Path]:
    """Delete hidden `.seg-*.creating` dirs: they hold schema headers only, never data."""
    removed = []
    active = store.dir("active")
    if active.is_dir():
        for p in active.iterdir():
            if p.name.startswith(".") and p.name.endswith(".creating") and p.is_dir():
                shutil.rmtree(p)
                removed.append(p)
        if removed:
            fsync_dir(active)
    return removed



