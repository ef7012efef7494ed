"""`fluxforge demo`: the whole appliance, offline, in about thirty seconds.

Why real processes: the point of the demo is to show what the appliance does,
so it runs the same code paths as the services -- `fluxforge collect` and
`fluxforge etl` as child processes, told when to stop by SIGTERM and reporting
READY=1 / STATUS= over sd_notify exactly as under systemd -- against the
loopback exchange in `sim` mode, served from this process on 127.0.0.1.
Everything lands in one directory: config.yaml, data/ (segments, features,
state), logs/ and chart.png.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..bronze.schemas import CHANNEL_SCHEMAS, channel_file
from ..bronze.finish import read_manifest
from .summary import DemoSummary, summarize
from ..bronze.journal import JournalScan, JournalUnreadable, iter_journal
from ..progress import Progress
from ..bronze.segments import SegmentStore
from ..service_child import ServiceChild, ServiceFailed
from ..live.endpoint import MAX_SOCKET_PATH
from ..live.settings import SOCKET_NAME
from .live_watch import LiveWatch, landed_count

MARKER = ".fluxforge-demo"
BASES = ("BTC", "ETH", "SOL", "BNB", "XRP", "DOGE", "ADA", "LTC", "DOT", "LINK")
MAX_SYMBOLS = len(BASES)
READY_TIMEOUT = 120.0   # a busy 2-core machine needs a while to import ccxt and fetch snapshots
STOP_TIMEOUT = 45.0     # the collector unit's TimeoutStopSec
DRAIN_TIMEOUT = 180.0   # the ETL finishing the last segments
LIVE_TIMEOUT = 60.0     # the ETL publishing the last segment's final rows once it has processed it


class DemoError(Exception):
    """Something the user can act on (a busy directory, a service that failed): one line."""


@dataclass(frozen=True)
class DemoOptions:
    directory: Path
    seconds: float = 30.0
    symbols: int = 3
    chart: bool = True

    @property
    def symbol_list(self) -> list[str]:
        return [f"{b}/USDT" for b in BASES[: self.symbols]]

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def config_path(self) -> Path:
        return self.directory / "config.yaml"

    @property
    def live_socket(self) -> Path | None:
        """The ETL's live socket (None: the path is too long for a Unix socket, live stays off)."""
        path = self.data_dir.resolve() / "state" / SOCKET_NAME
        return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None


def prepare_directory(directory: Path) -> None:
    """Use an empty (or new) directory, or clear a previous demo's; never touch anything else."""
    if directory.exists() and not directory.is_dir():
        raise DemoError(f"{directory} is a file; choose a directory with --dir")
    if directory.is_dir() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise DemoError(f"{directory} is not empty and was not made by `fluxforge demo`; choose another --dir")
        for name in ("data", "logs", "config.yaml", "chart.png"):
            path = directory / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("made by `fluxforge demo`; the next demo run with this --dir replaces it\n")


def demo_config(opts: DemoOptions, ccxt_config: dict) -> dict:
    """The appliance config for the demo: small segments so several rotate and reach the ETL live, and
    live features on (served on the data_dir's socket; off if its path is too long)."""
    live = {"enabled": True, "socket": str(opts.live_socket)} if opts.live_socket else {"enabled": False}
    return {
        "data_dir": str(opts.data_dir.resolve()),
        "host_id": "demo",
        "exchanges": [{"name": "binance", "ccxt": ccxt_config, "symbols": opts.symbol_list,
                       "channels": ["orderbook", "trades", "ticker"], "book_depth": 20}],
        "collector": {"flush_interval": 0.5, "segment_max_seconds": max(3.0, opts.seconds / 3),
                      "stall_timeout": 10.0, "min_free_mb": 16},
        # rows at a segment's end wait reorder_window for the next segment; on 127.0.0.1 nothing
        # arrives late, and a long window would hide the run's last seconds from the summary
        "etl": {"poll_interval": 0.5, "reorder_window": 0.5, "live": live,
                "features": {"bar_durations": [1, 5, 30, 60], "vpin_bucket_volume": 1.0,
                             "vpin_window_buckets": 10, "spread_regime_window": 30.0,
                             "kyle_lambda_window": 10.0}},
        "logging": {"level": "INFO", "format": "json"},
    }


class LiveCounts:
    """Messages (durable bronze rows), segments and feature files, read from disk for the progress line."""

    def __init__(self, data_dir: Path):
        self.store = SegmentStore(data_dir / "segments")
        self.features = data_dir / "features"
        self._finished_rows: dict[str, int] = {}

    def messages(self) -> int:
        total = 0
        for state in ("ready", "processing", "done", "failed"):
            for seg in self.store.list(state):
                if seg.name not in self._finished_rows:
                    self._finished_rows[seg.name] = _manifest_rows(seg)
                total += self._finished_rows[seg.name]
        for seg in self.store.list("active"):
            total += _journal_rows(seg)
        return total

    def segments(self) -> tuple[int, int]:
        """(segments the ETL finished, segments rotated so far)."""
        finished = sum(len(self.store.list(s)) for s in ("ready", "processing", "done", "failed"))
        return len(self.store.list("done")), finished

    def feature_files(self) -> int:
        if not self.features.is_dir():
            return 0
        return sum(1 for p in self.features.rglob("*.parquet") if not p.name.startswith("."))

    def line(self) -> str:
        done, rotated = self.segments()
        return (f"messages {self.messages():,} | segments {rotated} rotated, {done} transformed | "
                f"features {self.feature_files()} files")


def _manifest_rows(seg: Path) -> int:
    try:
        manifest = read_manifest(seg)
    except (OSError, ValueError):
        return 0  # moved on (ready -> processing) while we looked: counted next time
    return int(manifest.get("rows") or sum(c.get("rows", 0) for c in manifest.get("channels", {}).values()))


def _journal_rows(seg: Path) -> int:
    total = 0
    for channel, schema in CHANNEL_SCHEMAS.items():
        path = seg / channel_file(channel, finished=False)
        scan = JournalScan()
        try:
            for _ in iter_journal(path, schema, scan):
                pass
        except (OSError, JournalUnreadable):
            continue  # rotated away while we read, or not created yet
        total += scan.rows
    return total


class DemoProgress(Progress):
    """The one live line: phase, elapsed/total seconds and what is on disk (TTY only)."""

    def __init__(self, seconds: float, **kwargs):
        super().__init__(seconds, "demo", **kwargs)
        self.phase = "starting"
        self.counts = ""

    def line(self) -> str:
        if self.phase == "collecting":
            head = f"demo {self.done:4.0f}/{self.total:.0f} s"
        else:
            head = f"demo {self.phase}"
        return f"{head} | {self.counts}" if self.counts else head


async def run_demo(opts: DemoOptions, progress: DemoProgress | None = None) -> DemoSummary:
    """Loopback exchange -> collector -> ETL for opts.seconds, stopped cleanly; the summary of what landed."""
    from ..loopback import LoopbackExchange, SimOptions

    prepare_directory(opts.directory)
    progress = progress or DemoProgress(opts.seconds)
    logs = opts.directory / "logs"
    children: list[ServiceChild] = []
    loop = asyncio.get_running_loop()
    watch: LiveWatch | None = None
    watching: asyncio.Task | None = None
    try:
        async with LoopbackExchange("sim", opts.symbol_list, sim=SimOptions(seed=20240808)) as lx:
            opts.config_path.write_text(yaml.safe_dump(demo_config(opts, lx.ccxt_config("binance")), sort_keys=False))
            counts = LiveCounts(opts.data_dir)
            collector = ServiceChild("collector", ["collect", "--config", str(opts.config_path)],
                                     logs / "collector.log")
            etl = ServiceChild("etl", ["etl", "--config", str(opts.config_path)], logs / "etl.log")
            children += [collector, etl]
            for child in children:
                child.start()
            progress.set(0)
            await asyncio.gather(collector.wait_ready(READY_TIMEOUT), etl.wait_ready(READY_TIMEOUT))
            if opts.live_socket is not None:  # the ETL's socket is bound before its READY=1
                watch = LiveWatch(opts.live_socket)
                watching = asyncio.create_task(watch.run())
            progress.phase = "collecting"
            start = last_count = loop.time()
            progress.counts = counts.line()
            while (elapsed := loop.time() - start) < opts.seconds:
                for child in children:
                    child.poll_notify()
                    child.check_alive()
                if loop.time() - last_count >= 1.0:  # counting reads the active journals: once a second
                    progress.counts, last_count = counts.line(), loop.time()
                progress.set(elapsed)
                await asyncio.sleep(0.25)
            progress.set(opts.seconds)
            progress.phase = "stopping the collector (final flush and rotation)"
            progress.counts = counts.line()
            progress.set(opts.seconds)
            rc = await collector.stop(STOP_TIMEOUT)
            if rc != 0:
                raise ServiceFailed(f"collector exited with status {rc} on SIGTERM: {collector.last_error()}")
            if counts.store.list("active"):
                # the collector defers finishing to its next start when its stop deadline is short;
                # run that same recovery now so the ETL gets every row
                await asyncio.to_thread(_recover_active, counts.store, logs / "demo.log")
            await _drain(etl, counts, progress, loop)
            if watch is not None:
                await _live_caught_up(watch, etl, counts, progress, loop)
            rc = await etl.stop(STOP_TIMEOUT)
            if rc != 0:
                raise ServiceFailed(f"etl exited with status {rc} on SIGTERM: {etl.last_error()}")
            if watching is not None:  # the ETL's stop closes the subscription
                try:
                    await asyncio.wait_for(watching, STOP_TIMEOUT)
                except TimeoutError:
                    watch.error = f"the subscription was still open {STOP_TIMEOUT:.0f} s after the ETL stopped"
            progress.phase = "done"
            progress.counts = counts.line()
    except ServiceFailed as e:
        raise DemoError(str(e)) from None
    finally:
        for child in children:
            child.kill()
        if watching is not None and not watching.done():
            watching.cancel()
        progress.close()
    summary = summarize(opts.directory, opts.data_dir, opts.seconds)
    if watch is not None:
        summary.live = watch.check(summary.features_dir)
    else:
        summary.live_note = f"the live socket's path would be longer than {MAX_SOCKET_PATH} bytes: choose a shorter --dir"
    if opts.chart:
        _draw_chart(summary, opts)
    else:
        summary.chart_note = "--no-chart"
    return summary


def _recover_active(store: SegmentStore, log_path: Path) -> None:
    """The collector's start-up recovery (finish active/ segments into ready/), logging to the demo's log."""
    import structlog

    from ..logs import configure_logging
    from ..bronze.recovery import recover_active_segments

    with open(log_path, "a") as log_file:
        configure_logging("INFO", "json", "fluxforge-demo")
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=log_file))
        try:
            recover_active_segments(store)
        finally:
            structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))


async def _live_caught_up(watch: LiveWatch, etl: ServiceChild, counts: LiveCounts, progress: DemoProgress,
                          loop) -> None:
    """Wait until the demo's subscriber has as many rows as landed: the ETL publishes the last
    segment's final rows once it has processed it (after LIVE_TIMEOUT the summary says what is missing).
    Called once every segment is processed (`_drain`): what landed is final, counted once."""
    deadline = loop.time() + LIVE_TIMEOUT
    progress.phase = "waiting for the last live rows"
    landed = await asyncio.to_thread(landed_count, counts.features)
    while watch.error is None and loop.time() < deadline:
        if watch.received >= landed:
            return
        etl.poll_notify()
        etl.check_alive()
        progress.set(progress.done)
        await asyncio.sleep(0.2)


async def _drain(etl: ServiceChild, counts: LiveCounts, progress: DemoProgress, loop) -> None:
    """Wait until the ETL has taken every segment out of ready/ and processing/."""
    deadline = loop.time() + DRAIN_TIMEOUT
    while True:
        waiting = len(counts.store.list("ready")) + len(counts.store.list("processing"))
        if waiting == 0:
            return
        etl.poll_notify()
        etl.check_alive()
        if loop.time() > deadline:
            raise ServiceFailed(f"etl did not finish {waiting} segment(s) within {DRAIN_TIMEOUT:.0f}s "
                                f"(status: {etl.status}; log {etl.log_path})")
        progress.phase = f"ETL transforming the last {waiting} segment(s)"
        progress.counts = counts.line()
        progress.set(progress.done)
        await asyncio.sleep(0.2)


def _draw_chart(summary: DemoSummary, opts: DemoOptions) -> None:
    from ..observe.feature_tree import NoBars, UnreadableFeatureFile, resolve_symbol
    from ..observe.report import ReportError, chart_symbol

    out = opts.directory / "chart.png"
    interval = min(summary.bar_rows, default=1)
    try:
        exchange, symbol = resolve_symbol(summary.features_dir, opts.symbol_list[0], "binance")
        series, _ = chart_symbol(summary.features_dir, exchange, symbol, interval, out,
                                 title=f"fluxforge demo: {exchange} {symbol}, {interval}s bars and hf rows, "
                                       f"{opts.seconds:.0f} s of a simulated market")
        summary.chart = out
    except (NoBars, ReportError, UnreadableFeatureFile) as e:
        summary.chart_note = str(e)
