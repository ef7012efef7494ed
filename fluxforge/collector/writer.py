"""The bronze writer: queue -> journals every flush_interval, rotation, disk-full handling.

Why a dedicated thread for I/O: fsync on an SD card can take hundreds of
milliseconds, and the event loop must keep reading websockets (and pinging the
watchdog) meanwhile.  Journal writes run on one single-threaded executor (so
flushes stay in order); finishing rotated segments (Parquet conversion) runs on
another, so a rotation never delays the next flush.

A value Arrow cannot convert never kills the writer: rows are checked before
they are admitted (`rows.py`), a book row with unconvertible levels is dropped
alone at conversion, and should a whole channel batch still fail to convert,
only that batch is dropped -- each with a `dropped` event giving the reason.

A journal write that fails for another reason than a full disk (EIO, EFBIG,
EROFS, ...) is rolled back by the journal; that channel's batch is dropped with
`dropped` events, the other channels of the flush are still written, and then
the writer stops (`JournalWriteFailed`: the process exits 1 and systemd
restarts it).  The final flush in `close()` still writes whatever is queued and
accounts for what it cannot write, so no accepted row is ever lost silently;
the segment is then left in active/ for start-up recovery.

Disk full (free space under `min_free_mb`, or ENOSPC/EDQUOT from a write): the
collector keeps running, drops data rows with accounting, keeps its event rows
in memory, reports it (log, STATUS, `disk_full` event) and resumes by itself
when space returns, writing `dropped` and `gap` events for what was lost.
Book rows lost after admission (disk full, unconvertible) make the next message of
that book a snapshot row (`Recorder.book_rows_lost`), and the deltas queued before
it are dropped with accounting (`book_chain.py`), so bronze deltas never continue
a row that is not there.
"""
from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from ..bronze.active_segment import ActiveSegment
from ..bronze.finish import finish_segment_with_manifest
from ..config import Config
from ..bronze.journal import JournalUnreadable
from ..bronze.schemas import segment_channels
from ..fsio import DISK_FULL_ERRNOS
from ..logs import get_logger
from ..bronze.segments import SegmentStore
from .book_chain import BookChainGuard
from .recorder import Recorder
from .row_queue import RowQueue
from .rows import ChannelBuffer

log = get_logger("fluxforge.collector.writer")
MB = 1024 * 1024
MAX_CARRIED_EVENTS = 10000
DISK_FULL_REASON = "disk full"


def _books_of(buf: ChannelBuffer) -> set[tuple[str, str]]:
    return set(zip(buf.cols["exchange"], buf.cols["symbol"]))


class DiskFull(Exception):
    pass


class JournalWriteFailed(Exception):
    """A journal write failed, not for a full disk: the writer cannot go on (its rows are accounted for)."""


class BronzeWriter:
    def __init__(self, cfg: Config, queue: RowQueue, recorder: Recorder,
                 on_first_durable: Callable[[], None] = lambda: None):
        self.cfg = cfg
        self.c = cfg.collector
        self.store = SegmentStore(cfg.segments_dir)
        self.queue = queue
        self.recorder = recorder
        self.exchanges = [x.name for x in cfg.exchanges]
        self.on_first_durable = on_first_durable
        self.segment: ActiveSegment | None = None
        self._io = ThreadPoolExecutor(1, thread_name_prefix="journal")
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="finish")
        self._finishing: set[asyncio.Future] = set()
        self._unfinished: list[Path] = []
        self._carried_events: ChannelBuffer | None = None
        self._cycle_task: asyncio.Future | None = None
        self._last_seq = 0
        self.last_flush = time.monotonic()
        self.flushes = 0
        self.durable_rows = 0
        self.rotations = 0
        self.ready_sent = False
        self.disk_full = False
        self.disk_dropped_total = 0
        self.conversion_dropped_total = 0
        self.write_failed_total = 0
        self.write_error: str | None = None  # the first journal write failure (not disk full): the writer stops
        self._closing = False
        self._lost_batches: list[tuple[str, ChannelBuffer, str]] = []  # (channel, batch, `dropped` reason)
        self._disk_dropped: Counter[tuple[str, str]] = Counter()
        self._chains = BookChainGuard()
        self.metrics = None  # observe.collector_metrics.CollectorMetrics when metrics are enabled

    # -- segments -----------------------------------------------------------------
    def _open_segment(self) -> ActiveSegment:
        seq = max(self.store.next_seq(), self._last_seq + 1)
        self._last_seq = seq
        recorded = {ch for x in self.cfg.exchanges for ch in x.channel_symbols()}
        return ActiveSegment.create(self.store, self.cfg.host_id, seq=seq, channels=segment_channels(recorded))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        while self.segment is None:
            try:
                self.segment = await loop.run_in_executor(self._io, self._open_segment)
            except OSError as e:
                if e.errno not in DISK_FULL_ERRNOS:
                    raise
                self._enter_disk_full(f"cannot create a segment: {e.strerror}")
                await asyncio.sleep(self.c.flush_interval)
        log.info("segment_opened", segment=self.segment.id.name)

    def _free_mb(self) -> float:
        return shutil.disk_usage(self.store.root).free / MB

    # -- flushing -----------------------------------------------------------------
    def _write(self, buffers: dict[str, ChannelBuffer]) -> dict[str, ChannelBuffer]:
        """Thread: append each non-empty channel batch and fsync; returns buffers NOT written (disk full).

        A batch that does not convert, or whose write fails for another reason than
        a full disk, is dropped alone: it is recorded in `self._lost_batches`
        (reported by `flush`) and the other channels are written.
        """
        assert self.segment is not None
        if self._free_mb() < self.c.min_free_mb:
            raise DiskFull(f"free space {self._free_mb():.1f} MB < min_free_mb {self.c.min_free_mb}")
        unwritten: dict[str, ChannelBuffer] = {}
        wrote = False
        for channel, buf in buffers.items():
            if not buf.rows:
                continue
            try:
                self.segment.write(channel, buf.to_batch(), sync=True)
                wrote = True
            except OSError as e:
                if e.errno in DISK_FULL_ERRNOS:
                    unwritten[channel] = buf
                else:  # the journal rolled the batch back: drop it with accounting, then stop (flush)
                    self.write_error = self.write_error or f"{channel}: {type(e).__name__}: {e}"
                    self._lost_batches.append((channel, buf, f"write failed: {type(e).__name__}: {e}"))
            except Exception as e:  # noqa: BLE001 -- a value nothing caught earlier: this batch only
                self._lost_batches.append((channel, buf, f"unconvertible batch: {type(e).__name__}: {e}"))
        if wrote:
            self.store.mark_flush()  # the live ETL reads the flush now, all channels at once
        return unwritten

    def _report_dropped_rows(self, buffers: dict[str, ChannelBuffer]) -> int:
        """`dropped` events for rows conversion refused (loop thread); returns how many data rows."""
        lost = 0
        for channel, buf in buffers.items():
            for exchange, symbol, reason in buf.bad:
                self.recorder.event(exchange, symbol, channel, "dropped", reason, 1)
                lost += channel != "events"
                self.conversion_dropped_total += channel != "events"
            if channel == "orderbook" and buf.broken_after:
                self._books_lost(buf.broken_after, "follows an unconvertible book row")
        for channel, buf, reason in self._lost_batches:
            log.error("batch_dropped", channel=channel, rows=buf.rows, reason=reason)
            for (exchange, symbol), count in Counter(zip(buf.cols["exchange"], buf.cols["symbol"])).items():
                self.recorder.event(exchange, symbol, channel, "dropped", reason, count)
            data_rows = buf.rows if channel != "events" else 0
            if reason.startswith("write failed"):
                self.write_failed_total += data_rows
            else:
                self.conversion_dropped_total += data_rows
            lost += data_rows
            if channel == "orderbook":
                self._books_lost(_books_of(buf), f"follows a lost book batch ({reason})"[:300])
        self._lost_batches.clear()
        return lost

    async def flush(self) -> None:
        loop = asyncio.get_running_loop()
        buffers, n = self.queue.take()
        if self._carried_events is not None:
            buffers["events"].prepend(self._carried_events)
            self._carried_events = None
        orphans = self._drop_orphan_deltas(buffers)
        started = time.monotonic()
        try:
            try:
                unwritten = await loop.run_in_executor(self._io, self._write, buffers)
            except DiskFull as e:
                unwritten = buffers
                self._enter_disk_full(str(e))
            else:
                if unwritten:
                    self._enter_disk_full("ENOSPC while writing " + ", ".join(sorted(unwritten)))
                elif self.disk_full:
                    self._leave_disk_full()
            self._account_unwritten(unwritten)
            if self.metrics is not None:
                not_written = {**unwritten, **{ch: buf for ch, buf, _ in self._lost_batches}}
                self.metrics.flushed(buffers, not_written, time.monotonic() - started)
            written = n - orphans - sum(b.rows for ch, b in unwritten.items() if ch != "events")
            written -= self._report_dropped_rows(buffers)
            self.durable_rows += written
            if written and not self.ready_sent:
                self.ready_sent = True
                self.on_first_durable()
        finally:
            self.queue.done(n)
            self.last_flush = time.monotonic()
            self.flushes += 1
        if self.write_error is not None and not self._closing:
            raise JournalWriteFailed(self.write_error)

    def _account_unwritten(self, unwritten: dict[str, ChannelBuffer]) -> None:
        for channel, buf in unwritten.items():
            if channel == "events":
                if buf.rows <= MAX_CARRIED_EVENTS:
                    self._carried_events = buf  # written once space returns
                continue
            for exchange, count in Counter(buf.cols["exchange"]).items():
                self._disk_dropped[(exchange, channel)] += count
            if channel == "orderbook":
                self._books_lost(_books_of(buf), DISK_FULL_REASON)
            self.disk_dropped_total += buf.rows

    def _books_lost(self, books: set[tuple[str, str]], reason: str) -> None:
        """The last queued row of each book did not reach bronze: restart each from a snapshot."""
        self.recorder.book_rows_lost(books)
        self._chains.lost(books, reason)

    def _drop_orphan_deltas(self, buffers: dict[str, ChannelBuffer]) -> int:
        """Deltas continuing a book row that was lost: dropped and counted (loop thread)."""
        buffers["orderbook"], dropped = self._chains.filter(buffers["orderbook"])
        for (exchange, symbol, reason), count in sorted(dropped.items()):
            self.recorder.event(exchange, symbol, "orderbook", "dropped", reason, count)
            if reason == DISK_FULL_REASON:
                self.disk_dropped_total += count
            else:
                self.conversion_dropped_total += count
        return sum(dropped.values())

    def _enter_disk_full(self, reason: str) -> None:
        if self.disk_full:
            return
        self.disk_full = True
        log.error("disk_full", reason=reason, path=str(self.store.root))
        for ex in self.exchanges:
            self.recorder.event(ex, None, None, "disk_full", reason)

    def _leave_disk_full(self) -> None:
        self.disk_full = False
        dropped = sum(self._disk_dropped.values())
        log.warning("disk_space_recovered", rows_dropped=dropped, free_mb=round(self._free_mb(), 1))
        for (ex, channel), count in sorted(self._disk_dropped.items()):
            self.recorder.event(ex, None, channel, "dropped", DISK_FULL_REASON, count)
        for ex in sorted({ex for ex, _ in self._disk_dropped}):
            self.recorder.event(ex, None, None, "gap", "rows dropped while the disk was full")
        self._disk_dropped.clear()

    # -- rotation -----------------------------------------------------------------
    def _should_rotate(self) -> bool:
        seg = self.segment
        return seg is not None and (seg.size >= self.c.segment_max_mb * MB or seg.age >= self.c.segment_max_seconds)

    async def rotate(self) -> None:
        loop = asyncio.get_running_loop()
        old = self.segment
        assert old is not None
        try:
            new = await loop.run_in_executor(self._io, self._open_segment)
        except OSError as e:
            if e.errno not in DISK_FULL_ERRNOS:
                raise
            self._enter_disk_full(f"cannot create a segment: {e.strerror}")
            return
        self.segment = new
        await loop.run_in_executor(self._io, old.close)
        self.rotations += 1
        self._finish_in_background(old.path)

    def _finish_in_background(self, path: Path) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._finisher, finish_segment_with_manifest, path, self.store)
        self._finishing.add(fut)
        fut.add_done_callback(lambda f, p=path: self._finished(p, f))

    def _finished(self, path: Path, fut: asyncio.Future) -> None:
        self._finishing.discard(fut)
        err = fut.exception()
        if err is None:
            ready, m = fut.result()  # manifest read before the rename: the ETL may already have moved it
            log.info("segment_rotated", segment=ready.name, rows=m["rows"],
                     bytes=sum(c["bytes"] for c in m["channels"].values()))
        elif isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            log.error("segment_finish_postponed", segment=path.name, reason=str(err))
            self._unfinished.append(path)
            self._enter_disk_full(f"cannot finish {path.name}: {err}")
        elif isinstance(err, JournalUnreadable):
            self.store.fail(path, f"finishing failed: {err}")
            log.error("segment_failed", segment=path.name, reason=str(err))
        else:
            log.error("segment_finish_error", segment=path.name, reason=f"{type(err).__name__}: {err}")
            self._unfinished.append(path)

    async def _cycle(self) -> None:
        await self.flush()
        if not self.disk_full and self.write_error is None:  # (a write error seen while closing: no rotation)
            if self._should_rotate():
                await self.rotate()
            while self._unfinished:
                self._finish_in_background(self._unfinished.pop(0))

    async def run(self) -> None:
        """Flush every flush_interval; rotate by size or age; retry postponed finishing.

        Each cycle runs shielded: cancelling `run()` (at shutdown) never abandons
        buffers already taken from the queue; `close()` waits for the cycle.
        """
        while True:
            next_at = self.last_flush + self.c.flush_interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            self._cycle_task = asyncio.ensure_future(self._cycle())
            await asyncio.shield(self._cycle_task)

    async def close(self, timeout: float) -> None:
        """Final flush, close the journals, finish the segment if time allows (else recovery will).

        Also after the writer failed: the final flush writes every channel it can
        and drops the rest with accounting, then once more for those `dropped`
        events; the segment then stays in active/ (recovery finishes it on the
        next start) and `JournalWriteFailed` is raised.
        """
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        self._closing = True
        if self._cycle_task is not None and not self._cycle_task.done():
            await asyncio.wait([self._cycle_task], timeout=timeout)
        await self.flush()
        if self.queue.buffers["events"].rows:  # events the final flush itself recorded (drops, gaps)
            await self.flush()
        if self.segment is not None:
            await loop.run_in_executor(self._io, self.segment.close)
            if not self.segment.rows:
                shutil.rmtree(self.segment.path)  # schema headers only: nothing to keep
            elif not self.disk_full and self.write_error is None:
                self._finish_in_background(self.segment.path)
            self.segment = None
        self.store.clear_flush_mark()  # the last flush is done
        pending = list(self._finishing)
        if pending:
            remaining = max(0.1, deadline - time.monotonic())
            done, not_done = await asyncio.wait(pending, timeout=remaining)
            if not_done:
                log.warning("segment_finish_deferred", reason="stop deadline; recovered on next start")
        self._io.shutdown(wait=False)
        self._finisher.shutdown(wait=False)
        if self.write_error is not None:
            raise JournalWriteFailed(f"{self.write_error} (unwritten rows dropped with `dropped` events; "
                                     "the segment is left in active/ for recovery)")
