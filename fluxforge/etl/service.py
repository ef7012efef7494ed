"""`fluxforge etl`: the long-running service loop speaking systemd (DESIGN decision 6).

Why segments run in a worker thread: a 64 MB segment takes seconds of (GIL-free,
mostly) Arrow and kernel work; the asyncio loop keeps pinging the watchdog,
answering SIGTERM and refreshing STATUS= meanwhile.  SIGTERM sends STOPPING=1 and
the loop exits after the current segment finishes -- outputs are never
half-written, and a SIGKILL at any moment is covered by the checkpoint protocol.

Health (gates WATCHDOG=1): the current segment has not run longer than
`etl.max_segment_seconds` and the last attempt did not hit an environmental error
that persists longer than the same limit.
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from ..config import Config
from ..logs import get_logger
from ..bronze.segments import SegmentId
from ..observe.service_metrics import install_etl_metrics
from ..service import SystemdNotifier, install_stop_handlers, watchdog_loop
from .ready_watch import ReadyWatcher
from .runner import EtlRunner, Outcome, RetryLater

log = get_logger("fluxforge.etl")


class EtlService:
    def __init__(self, cfg: Config, once: bool = False, notifier: SystemdNotifier | None = None,
                 engine_class=None):
        self.cfg = cfg
        self.once = once
        self.notifier = notifier or SystemdNotifier()
        self.runner = EtlRunner.from_config(cfg, engine_class)
        self.watcher = ReadyWatcher(self.runner.store.dir("ready"), cfg.etl.poll_interval)
        self._stop = False
        self._busy_since: float | None = None
        self._failing_since: float | None = None
        self.processed = 0
        self.failed = 0
        self.metrics, self.metrics_endpoint = install_etl_metrics(self)

    # -- systemd ---------------------------------------------------------------------
    def status_line(self) -> str:
        backlog = self.runner.backlog()
        parts = [f"backlog {len(backlog)} segment{'s' if len(backlog) != 1 else ''}"]
        if backlog:
            age = (datetime.now(timezone.utc) - SegmentId.parse(backlog[0].name).start_datetime).total_seconds()
            parts[0] += f" (oldest {_age(age)})"
        last = self.runner.last
        if last is not None and last.result is not None:
            parts.append(f"last {last.segment} {last.result.rows_per_s:,.0f} rows/s")
        elif last is not None:
            parts.append(f"last {last.segment} {last.state}")
        parts.append(f"done {self.processed}, failed {self.failed}")
        if self._failing_since is not None:
            parts.append("RETRYING after I/O error")
        return "; ".join(parts)

    def healthy(self) -> str | None:
        limit = self.cfg.etl.max_segment_seconds
        now = time.monotonic()
        if self._busy_since is not None and now - self._busy_since > limit:
            return f"segment running for {now - self._busy_since:.0f}s (> etl.max_segment_seconds={limit:g})"
        if self._failing_since is not None and now - self._failing_since > limit:
            return f"I/O errors for {now - self._failing_since:.0f}s"
        return None

    def request_stop(self) -> None:
        if not self._stop:
            self._stop = True
            self.notifier.stopping()
            log.info("etl_stopping", note="finishing the current segment")
            self.watcher.wake()

    # -- loop ---------------------------------------------------------------------------
    async def _in_thread(self, fn, *args):
        self._busy_since = time.monotonic()
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self._busy_since = None

    def _count(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            if self.metrics is not None:
                self.metrics.segment_done(o)
            if o.state == "done":
                self.processed += 1
            else:
                self.failed += 1

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        install_stop_handlers(loop, self.request_stop)
        self.watcher.start(loop)
        log.info("etl_started", watch=self.watcher.mode, ready=str(self.watcher.directory),
                 checkpoint=self.runner.checkpoint.last_segment, once=self.once)
        endpoint = loop.create_task(self.metrics_endpoint.serve()) if self.metrics_endpoint is not None else None
        try:
            self._count(await self._in_thread(self.runner.recover))
            self.notifier.ready(self.status_line())   # READY=1: directories scanned, recovery done
            watchdog = asyncio.create_task(watchdog_loop(self.notifier, self.healthy))
            try:
                await self._loop()
            finally:
                watchdog.cancel()
        finally:
            self.watcher.close(loop)
            if endpoint is not None:
                endpoint.cancel()
        log.info("etl_stopped", processed=self.processed, failed=self.failed)
        return 0

    async def _loop(self) -> None:
        while not self._stop:
            try:
                seg_dir = self.runner.claim_next()
                if seg_dir is not None:
                    self.notifier.status(self.status_line() + f"; processing {seg_dir.name}")
                    self._count([await self._in_thread(self.runner.process_claimed, seg_dir)])
                    self._failing_since = None
                    self.notifier.status(self.status_line())
                    continue
            except RetryLater:
                self._failing_since = self._failing_since or time.monotonic()
                self.notifier.status(self.status_line())
                if self.once:
                    raise
                await self.watcher.wait(self.cfg.etl.poll_interval)
                self._count(await self._in_thread(self.runner.recover))
                continue
            if self.once:
                return
            self.notifier.status(self.status_line())
            await self.watcher.wait()


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
