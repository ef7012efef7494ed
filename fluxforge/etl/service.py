"""`fluxforge etl`: the long-running service loop speaking systemd (DESIGN decision 6).

Why segments run in a worker thread: a 64 MB segment takes seconds of (GIL-free,
mostly) Arrow and kernel work; the asyncio loop keeps pinging the watchdog,
answering SIGTERM and refreshing STATUS= meanwhile.  SIGTERM sends STOPPING=1 and
the loop exits after the current segment finishes -- outputs are never
half-written, and a SIGKILL at any moment is covered by the checkpoint protocol.

Health (gates WATCHDOG=1): the current segment has not run longer than
`etl.max_segment_seconds` and the last attempt did not hit an environmental error
(other than a full disk) that persists longer than the same limit.

A full disk is waited out (DESIGN decision 10): at start-up or in the loop, a
`RetryLater` leaves the segment in processing/, STATUS= says `DISK FULL`
(`fluxforge status` reads it), and recovery is retried with back-off until
space returns -- the process never exits into a restart loop that systemd
gives up on.  The whole run holds `state/etl.lock` (one ETL per data_dir).
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from ..config import Config
from ..locks import service_lock
from ..logs import get_logger
from ..bronze.segments import SegmentId
from ..observe.service_metrics import install_etl_metrics
from ..service import SystemdNotifier, install_stop_handlers, watchdog_loop
from . import chunk_log, memory_trim
from .live_follow import LiveFollower, Publication
from .live_wake import LiveWake
from .ready_watch import ReadyWatcher
from ..fsio import ENV_ERRNOS
from .runner import EtlRunner, Outcome, RetryLater

log = get_logger("fluxforge.etl")
BACKOFF_MAX = 60.0


class EtlService:
    def __init__(self, cfg: Config, once: bool = False, notifier: SystemdNotifier | None = None,
                 engine_class=None):
        self.cfg = cfg
        self.once = once
        self.notifier = notifier or SystemdNotifier()
        self._engine_class = engine_class
        # the checkpoint is read in run(), under the instance lock (a second instance must not act on it)
        self.runner = EtlRunner.from_config(cfg, engine_class, read_checkpoint=False)
        self.watcher = ReadyWatcher(self.runner.store.dir("ready"), cfg.etl.poll_interval)
        self._stop = False
        self._busy_since: float | None = None
        self._failing_since: float | None = None
        self._retry_reason: RetryLater | None = None
        self._retries = 0
        self.processed = 0
        self.failed = 0
        # live features (etl.live): the hub rows are published to, the follower computing them
        self.hub = None if once else _live_hub(cfg)  # --once: a batch run serves nobody
        self.live: LiveFollower | None = None
        self._live_wake: LiveWake | None = None  # while the live loop runs
        self._segment_lock = asyncio.Lock()  # the live path never runs while a segment is claimed/processed
        self._status_at = 0.0
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
        live = [p.status().removeprefix("live ") for p in (self.live, self.hub) if p is not None]
        if live:  # one `live ...` part: latency (the computation), then subscribers (the hub)
            parts.append("live " + ", ".join(live))
        if self._retry_reason is not None and self._retry_reason.disk_full:
            return "DISK FULL (disk_full), waiting for space: " + "; ".join(parts)
        if self._failing_since is not None:
            parts.append("RETRYING after I/O error")
        return "; ".join(parts)

    def healthy(self) -> str | None:
        limit = self.cfg.etl.max_segment_seconds
        now = time.monotonic()
        if self._busy_since is not None and now - self._busy_since > limit:
            return f"segment running for {now - self._busy_since:.0f}s (> etl.max_segment_seconds={limit:g})"
        disk_full = self._retry_reason is not None and self._retry_reason.disk_full
        if self._failing_since is not None and not disk_full and now - self._failing_since > limit:
            return f"I/O errors for {now - self._failing_since:.0f}s"
        return None

    def request_stop(self) -> None:
        if not self._stop:
            self._stop = True
            self.notifier.stopping()
            log.info("etl_stopping", note="finishing the current segment")
            self.watcher.wake()
            self._wake_live()

    # -- loop ---------------------------------------------------------------------------
    async def _in_thread(self, fn):
        self._busy_since = time.monotonic()
        try:
            return await asyncio.to_thread(fn)
        finally:
            self._busy_since = None

    def _wake_live(self) -> None:
        if self._live_wake is not None:
            self._live_wake.wake()

    def _count(self, outcomes: list[Outcome]) -> None:
        if outcomes:
            self._wake_live()  # a finished segment may let the live path begin the next (no file event)
        for o in outcomes:
            if self.metrics is not None:
                self.metrics.segment_done(o)
            if o.state == "done":
                self.processed += 1
            else:
                self.failed += 1
            if self.live is not None:
                try:
                    self._publish(self.live.segment_done(o))
                    if o.state == "done":
                        self.live.published_through(o.segment)
                except Exception as e:  # noqa: BLE001 -- the live path never harms the segment pipeline
                    log.exception("live_error", segment=o.segment)
                    self.live.reset(e)

    async def run(self) -> int:
        with service_lock(self.cfg.state_dir, "etl", "fluxforge etl"):
            # Read the checkpoint again now that no other ETL can be writing it.
            self.runner = EtlRunner.from_config(self.cfg, self._engine_class)
            if self.hub is not None:
                self.runner.keep_outputs = True
                self.live = LiveFollower(self.runner)
                store = self.runner.store
                chunk_log.remove_stale(self.cfg.state_dir, {p.name for state in ("active", "ready", "processing")
                                                            for p in store.list(state)})
            return await self._run()

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        install_stop_handlers(loop, self.request_stop)
        self.watcher.start(loop)
        log.info("etl_started", watch=self.watcher.mode, ready=str(self.watcher.directory),
                 checkpoint=self.runner.checkpoint.last_segment, once=self.once)
        endpoint = loop.create_task(self.metrics_endpoint.serve()) if self.metrics_endpoint is not None else None
        if self.live is not None:
            await self._seed_ring()
        if self.hub is not None:
            await self.hub.start()
        if self.live is not None:
            try:
                self._publish(await asyncio.to_thread(self.live.restart_replay))
            except Exception as e:  # noqa: BLE001 -- the live path never stops the ETL
                log.exception("live_error")
                self.live.reset(e)
        try:
            recovered = await self._attempt(self.runner.recover)
            # READY=1: directories scanned (recovery done, or waiting for space with STATUS saying so)
            self.notifier.ready(self.status_line())
            watchdog = asyncio.create_task(watchdog_loop(self.notifier, self.healthy))
            trim = asyncio.create_task(self._trim_loop())
            live = asyncio.create_task(self._live_loop()) if self.live is not None else None
            try:
                await self._loop(recovered)
            finally:
                watchdog.cancel()
                trim.cancel()
                if live is not None:
                    live.cancel()
                    await asyncio.gather(live, return_exceptions=True)
        finally:
            self.watcher.close(loop)
            if endpoint is not None:
                endpoint.cancel()
            if self.hub is not None:
                await self.hub.close()
        log.info("etl_stopped", processed=self.processed, failed=self.failed)
        return 0

    async def _attempt(self, step, count_lock: asyncio.Lock | None = None) -> bool:
        """Run one runner step in the worker thread; False (and the retry state set) on RetryLater.
        count_lock: taken to count the outcomes (the live path's segment_done) when the step ran without it."""
        try:
            result = await self._in_thread(step)
        except RetryLater as e:
            self._retrying(e)
            return False
        except OSError as e:  # a rename or fsync outside the segment job hit the same condition
            if e.errno not in ENV_ERRNOS:
                raise
            self._retrying(RetryLater.from_oserror("etl", e))
            return False
        if isinstance(result, Outcome):
            result = [result]
        if count_lock is None:
            self._count(result or [])
        else:
            async with count_lock:
                self._count(result or [])
        if self._retry_reason is not None:
            log.info("etl_resumed", after_retries=self._retries, reason=str(self._retry_reason))
        self._failing_since, self._retry_reason, self._retries = None, None, 0
        return True

    def _retrying(self, e: RetryLater) -> None:
        self._failing_since = self._failing_since or time.monotonic()
        if self._retry_reason is None or self._retry_reason.disk_full != e.disk_full:
            log.error("etl_disk_full" if e.disk_full else "etl_retry_later", reason=str(e),
                      note="waiting; retried with back-off, resumes by itself")
        self._retry_reason = e
        self._retries += 1
        self.notifier.status(self.status_line())
        if self.once:
            raise e

    def backoff(self) -> float:
        """Seconds before the next attempt: poll_interval doubling per failed attempt, at most BACKOFF_MAX."""
        base = max(self.cfg.etl.poll_interval, 0.05)
        return min(BACKOFF_MAX, base * 2 ** min(self._retries - 1, 16))

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds` unless stopped (new ready/ segments do not cut a back-off short)."""
        deadline = time.monotonic() + seconds
        while not self._stop and time.monotonic() < deadline:
            await self.watcher.wait(deadline - time.monotonic())

    async def _loop(self, recovered: bool) -> None:
        while not self._stop:
            if not recovered:
                await self._sleep(self.backoff())
                if self._stop:
                    return
                async with self._segment_lock:
                    recovered = await self._attempt(self.runner.recover)
                continue
            async with self._segment_lock:
                try:
                    seg_dir = self.runner.claim_next()
                except OSError as e:
                    if e.errno not in ENV_ERRNOS:
                        raise
                    self._retrying(RetryLater.from_oserror("claiming a segment", e))
                    recovered = False
                    continue
                handover, pubs = None, []
                if seg_dir is not None and self.live is not None:
                    try:
                        handover, pubs = await asyncio.to_thread(self.live.handover, seg_dir)
                    except Exception as e:  # noqa: BLE001 -- the live path never harms the segment pipeline
                        log.exception("live_error", segment=seg_dir.name)
                        self.live.reset(e)
            self._publish(pubs)
            if handover is not None:
                self._wake_live()  # it finished the segment: the live path may begin the next (no file event)
            if seg_dir is not None:
                # processed without the lock: the live path goes on with the next segment while the
                # job writes this one's parts (a lock held through the parts and their fsyncs held
                # back every live row of that second).  The live path has finished this segment
                # (handover) or left it to the job, and starts another only from its end state.
                self.notifier.status(self.status_line() + f"; processing {seg_dir.name}")
                recovered = await self._attempt(lambda: self.runner.process_claimed(seg_dir, handover),
                                                count_lock=self._segment_lock)
                self.notifier.status(self.status_line())
                continue
            if self.once:
                return
            self.notifier.status(self.status_line())
            await self.watcher.wait()


    async def _trim_loop(self) -> None:
        """Every TRIM_INTERVAL: the free memory malloc holds back to the system (etl/memory_trim.py)."""
        while True:
            await asyncio.sleep(memory_trim.TRIM_INTERVAL)
            await asyncio.to_thread(memory_trim.give_back)

    # -- live ---------------------------------------------------------------------------
    async def _live_loop(self) -> None:
        """Follow the active segment whenever it may have grown (etl/live_wake.py); an error is logged,
        counted and the live engines restart from the checkpoint -- the segment pipeline never notices."""
        store = self.runner.store
        wake = LiveWake(store.dir("active"), store.dir("ready"), self.cfg.etl.live.poll_interval)
        wake.start(asyncio.get_running_loop())
        self._live_wake = wake
        log.info("live_started", wake=wake.mode)
        try:
            while not self._stop:
                async with self._segment_lock:
                    chunks = self.live.counters.chunks
                    try:
                        pubs = [] if self.live.quiet() else await asyncio.to_thread(self.live.step)
                    except Exception as e:  # noqa: BLE001
                        log.exception("live_error")
                        self.live.reset(e)
                        pubs = []
                    if self.live.counters.chunks > chunks:
                        wake.found_unannounced()  # new rows: counts only if no event woke us
                self._publish(pubs)
                now = time.monotonic()
                if self._busy_since is None and now - self._status_at > 5.0:
                    self._status_at = now
                    self.notifier.status(self.status_line())
                if pubs:
                    await asyncio.sleep(0)  # more may be waiting: look again at once
                else:
                    await wake.wait()
        finally:
            self._live_wake = None
            wake.close(asyncio.get_running_loop())

    async def _seed_ring(self) -> None:
        """Before any subscriber can connect: the hub's replay ring gets the recent rows already
        in Parquet (etl/live_seed.py), so a restart does not shorten the replay."""
        if not self.hub.ring.enabled:
            return
        try:
            pubs = await asyncio.to_thread(self.live.recent_landed, self.cfg.etl.live.replay_minutes)
        except Exception:  # noqa: BLE001 -- an unreadable part shortens the replay, never stops the ETL
            log.exception("live_seed_failed")
            return
        for p in pubs:
            self.hub.publish(p.product, p.table, replay=True, runs=p.runs)
        if pubs:
            log.info("live_replay_seeded", rows=sum(p.table.num_rows for p in pubs), publications=len(pubs),
                     minutes=self.cfg.etl.live.replay_minutes)

    def _publish(self, pubs: list[Publication]) -> None:
        """Hand rows to the hub (on the loop thread, as its contract asks)."""
        for p in pubs:
            self.hub.publish(p.product, p.table, replay=p.replay, runs=p.runs)
        if pubs:
            self.live.note_published(pubs, time.time())


def _live_hub(cfg: Config):
    """The live-features hub (fluxforge/live/) when etl.live.enabled; the ETL publishes to it
    (not with --once: a run that ends when ready/ is empty serves nobody)."""
    if not cfg.etl.live.enabled:
        return None
    from ..live.catalog import Catalog
    from ..live.hub import LiveHub

    return LiveHub(cfg.etl.live, cfg.state_dir, catalog=Catalog.from_config(cfg))


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
