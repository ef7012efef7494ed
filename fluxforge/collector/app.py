"""The collector process: recovery, exchanges, writer and systemd glue in one asyncio loop.

Why one loop: ccxt.pro is asyncio, the tap records rows synchronously inside
it, and the systemd watchdog must be pinged from that same loop (DESIGN
decision 6) so that a wedged loop is detected.  Only journal I/O and Parquet
conversion leave the loop, on the writer's threads.

Life cycle: recover active/ -> open a segment -> start every exchange ->
READY=1 once the first batch is durable -> STATUS every few seconds, WATCHDOG
while healthy -> SIGTERM: STOPPING=1, stop the streams, final flush, finish
the segment, exit 0 (within `stop_timeout`).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from ..config import Config
from ..locks import service_lock
from ..logs import get_logger
from ..bronze.recovery import recover_active_segments
from ..bronze.segments import SegmentStore
from ..observe.service_metrics import install_metrics
from ..service import SystemdNotifier, install_stop_handlers, watchdog_loop
from .ccxt_loader import exchange_classes
from .ticker_stream import align_ticker_stream
from .health import LoopLagMonitor, RateMeter, health_problem, status_line
from .recorder import Recorder
from .row_queue import RowQueue
from .snapshot_gate import SnapshotGate
from .book_checks import with_book_checks
from .partial_books import with_partial_books
from .tap import ExchangeTap, tapped_exchange_class
from .watchers import ExchangeRunner
from .writer import BronzeWriter

log = get_logger("fluxforge.collector")
STATUS_INTERVAL = 2.0


class Collector:
    def __init__(self, cfg: Config, notifier: SystemdNotifier | None = None,
                 watchdog_interval: float | None = None, lean_ccxt: bool = False):
        self.cfg = cfg
        self.lean_ccxt = lean_ccxt
        c = cfg.collector
        self.notifier = notifier or SystemdNotifier()
        self.watchdog_interval = watchdog_interval
        self.queue = RowQueue(c.queue_max, c.overflow_policy, int(c.queue_max_mb * 1024 * 1024))
        self.recorder = Recorder(self.queue, {x.name: x.book_depth for x in cfg.exchanges})
        self.gate = SnapshotGate(c.max_concurrent_snapshots, c.snapshot_spacing)
        self.writer = BronzeWriter(cfg, self.queue, self.recorder, on_first_durable=self._on_first_durable)
        self.lag = LoopLagMonitor()
        self.rate = RateMeter()
        self.metrics, self.metrics_endpoint = install_metrics(self, lambda: health_problem(self))
        self.exchanges: list[Any] = []
        self.runners: list[ExchangeRunner] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def _on_first_durable(self) -> None:
        self.notifier.ready(status_line(self, 0.0))
        log.info("collector_ready", segment=self.writer.segment.id.name if self.writer.segment else None)

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("collector_stopping")
            self.notifier.stopping()
            self._stop.set()

    def _build_exchanges(self) -> None:
        bases = exchange_classes([x.name for x in self.cfg.exchanges], lean=self.lean_ccxt)
        for xcfg in self.cfg.exchanges:
            tap = ExchangeTap(xcfg.name, xcfg.channel_symbols(), xcfg.aliases, self.recorder, self.gate,
                              partial_books=xcfg.book_stream == "partial")
            base = with_partial_books(xcfg.name, xcfg.book_stream, with_book_checks(xcfg.name, bases[xcfg.name]))
            cls = tapped_exchange_class(base, tap)
            exchange = cls(dict(xcfg.ccxt))
            if (name := align_ticker_stream(exchange, xcfg.ccxt)) is not None:
                log.info("ticker_stream", exchange=xcfg.name, watch_tickers=name,
                         note="several symbols' tickers from the stream one symbol's would be (ticker_stream.py); "
                              "set ccxt.options.watchTickers.name to choose another")
            self.exchanges.append(exchange)
            self.runners.append(ExchangeRunner(exchange, xcfg, self.cfg.collector, self.recorder))

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            self.notifier.status(status_line(self, self.rate.rate(self.recorder.messages)))

    async def _recover(self) -> None:
        store = SegmentStore(self.cfg.segments_dir)
        report = await asyncio.get_running_loop().run_in_executor(None, recover_active_segments, store)
        if report.recovered or report.failed:
            log.warning("recovery_done", recovered=len(report.recovered), failed=len(report.failed),
                        torn_batches_dropped=report.torn_batches_dropped)

    async def run(self, stop_timeout: float = 9.0) -> int:
        """The whole life of the process, holding `state/collector.lock` (one collector per data_dir)."""
        with service_lock(self.cfg.state_dir, "collector", "fluxforge collect"):
            return await self._run(stop_timeout)

    async def _run(self, stop_timeout: float) -> int:
        loop = asyncio.get_running_loop()
        install_stop_handlers(loop, self.request_stop)
        self.notifier.status("recovering segments")
        await self._recover()
        await self.writer.start()
        self._build_exchanges()
        for ex in self.cfg.exchanges:
            self.recorder.event(ex.name, None, None, "reconnect", "collector start")
        self._tasks = [loop.create_task(r.run(), name=f"exchange-{r.xcfg.name}") for r in self.runners]
        writer_task = loop.create_task(self.writer.run(), name="writer")
        service_tasks = [
            loop.create_task(self.lag.run(), name="loop-lag"),
            loop.create_task(self._status_loop(), name="status"),
            loop.create_task(watchdog_loop(self.notifier, lambda: health_problem(self), self.watchdog_interval),
                             name="watchdog"),
        ]
        if self.metrics_endpoint is not None:
            service_tasks.append(loop.create_task(self.metrics_endpoint.serve(), name="metrics"))
        self.notifier.status(f"connecting to {len(self.runners)} exchange(s)")
        stop_wait = loop.create_task(self._stop.wait())
        rc = await self._supervise(stop_wait, writer_task)
        deadline = time.monotonic() + stop_timeout
        for t in self._tasks + [writer_task]:
            t.cancel()
        await asyncio.gather(*self._tasks, writer_task, return_exceptions=True)
        await self._close_exchanges(timeout=min(2.0, stop_timeout / 3))
        try:  # after a writer failure too: whatever is still queued deserves a final flush attempt
            await self.writer.close(timeout=max(0.5, deadline - time.monotonic()))
        except Exception as e:  # noqa: BLE001 -- best effort; recovery finishes the segment on next start
            log.error("final_flush_failed", error=f"{type(e).__name__}: {e}")
            rc = 1
        for t in service_tasks + [stop_wait]:
            t.cancel()
        await asyncio.gather(*service_tasks, stop_wait, return_exceptions=True)
        log.info("collector_stopped", accepted=self.queue.accepted, rows=self.writer.durable_rows,
                 drops=self.queue.dropped_total)
        return rc

    async def _supervise(self, stop_wait: asyncio.Task, writer_task: asyncio.Task) -> int:
        """Wait for a stop request; a dead writer or exchange runner stops the process non-zero.

        An exchange runner that returns (none of its symbols exist) is logged and
        left; one that raises, or ends cancelled when nobody asked it to stop, has
        lost its streams in a way its own supervision did not catch, so the process
        exits 1 (after the final flush) and systemd restarts it.
        """
        watched = {stop_wait, writer_task, *self._tasks}
        while True:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            watched -= done
            if stop_wait in done:
                return 0
            for t in done:
                err = asyncio.CancelledError("cancelled, not by the collector") if t.cancelled() else t.exception()
                if t is writer_task:
                    log.error("writer_failed", error=f"{type(err).__name__}: {err}")
                elif err is None:
                    log.warning("exchange_runner_ended", task=t.get_name(), note="no configured symbol is listed")
                    continue
                else:
                    log.error("exchange_runner_failed", task=t.get_name(), error=f"{type(err).__name__}: {err}")
                self.notifier.stopping()
                return 1

    async def _close_exchanges(self, timeout: float) -> None:
        async def close(ex: Any) -> None:
            try:
                await ex.close()
            except Exception as e:  # closing is best effort
                log.debug("exchange_close_error", error=str(e))

        if self.exchanges:
            await asyncio.wait([asyncio.ensure_future(close(ex)) for ex in self.exchanges], timeout=timeout)
