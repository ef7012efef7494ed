"""The collector's watchdog sees whether data flows, and no task dies silently (issue 17 item 19).

WATCHDOG=1 used to be sent while the loop and the writer were fine even when
no stream had delivered anything for hours, and an exception in the stall
monitor (or an exchange runner) was swallowed with the task.  Now: no data
from any configured stream for NO_DATA_STALLS stall timeouts withholds the
ping (systemd restarts the collector), a dead watcher or stall monitor is
logged, recorded and restarted, and a dead exchange runner ends the process
non-zero (the process-level proof is in test_collector_task_death.py).  A future
ccxt cancels under a watcher (its `Client.close()` cancels every pending
`watch_*`) used to end the whole exchange runner as "cancelled", which the
collector took for "no symbol listed" and ran on without that exchange.
"""
from __future__ import annotations

import asyncio
import time

import ccxt.pro

from collector_support import make_config, running_collector, wait_until
from notify_listener import NotifyListener
from test_collector_e2e import binance_entry

from fluxforge.collector.backoff import Backoff
from fluxforge.collector.health import NO_DATA_STALLS
from fluxforge.collector.recorder import Recorder
from fluxforge.collector.row_queue import RowQueue
from fluxforge.collector.watchers import StallMonitor, supervised
from fluxforge.loopback import LoopbackExchange, SimOptions
from fluxforge.service import SystemdNotifier

SYMBOLS = ["BTC/USDT"]


def test_watchdog_withheld_when_no_stream_delivers_data(tmp_path):
    listener = NotifyListener(tmp_path / "notify.sock")
    stall = 0.4

    async def body():
        lx = await LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=20, seed=5)).start()
        stopped = False
        try:
            cfg = make_config(tmp_path / "data", [binance_entry(lx, SYMBOLS)], stall_timeout=stall)
            async with running_collector(cfg, notifier=SystemdNotifier(listener.path), watchdog_interval=0.1) as col:
                await wait_until(lambda: listener.has("READY=1") and listener.has("WATCHDOG=1"), 30,
                                 what="READY and WATCHDOG while data flows")
                await lx.stop()           # the exchange goes away: reconnects fail, no data at all
                stopped = True
                limit = NO_DATA_STALLS * stall
                await wait_until(lambda: col.recorder.data_silence() > limit + 1.5, 30, what="a long silence")
                last_data = col.recorder.last_data
                late = [t for t in listener.times("WATCHDOG=1") if t > last_data + limit + 0.5]
                assert not late, f"WATCHDOG=1 sent {late[-1] - last_data:.1f}s after the last data"
                assert len(listener.times("WATCHDOG=1")) > 3   # it did ping while data flowed
        finally:
            if not stopped:
                await lx.stop()

    try:
        asyncio.run(asyncio.wait_for(body(), 90))
    finally:
        listener.close()


def test_dead_stall_monitor_is_logged_recorded_and_restarted(tmp_path):
    cfg = make_config(tmp_path / "data", [{"name": "binance", "symbols": SYMBOLS, "ccxt": {}}])

    async def body():
        exchange = ccxt.pro.binance()
        try:
            recorder = Recorder(RowQueue(100, "drop"), {"binance": 10})
            monitor = StallMonitor(exchange, "binance", {"trades": SYMBOLS}, cfg.collector, recorder)
            exchange.clients = {"wss://broken": object()}     # check() fails on it: AttributeError
            task = asyncio.create_task(supervised("stall-monitor", "binance", monitor.run, recorder,
                                                  Backoff(0.01, 0.02)))
            await wait_until(lambda: recorder.event_counts["error"] >= 3, 30, what="restarts")
            assert not task.done()                              # still supervised, not swallowed
            exchange.clients = {}
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            reasons = [r for r in recorder.queue.buffers["events"].cols["reason"] if r]
            assert any("stall-monitor died (AttributeError" in r and "restarted" in r for r in reasons)
        finally:
            await exchange.close()

    asyncio.run(asyncio.wait_for(body(), 60))


def test_future_cancelled_by_ccxt_is_a_reconnect_not_a_dead_exchange(tmp_path):
    symbols = ["BTC/USDT", "ETH/USDT"]

    async def body():
        async with LoopbackExchange("sim", symbols, sim=SimOptions(rate=20, seed=6)) as lx:
            cfg = make_config(tmp_path / "data", [binance_entry(lx, symbols)])
            async with running_collector(cfg) as col:
                streams = [(ch, s) for ch in ("orderbook", "trades", "ticker") for s in symbols]
                seen = col.recorder.last_seen
                await wait_until(lambda: all(("binance", ch, s) in seen for ch, s in streams), 30,
                                 what="every stream delivering")
                exchange, runner = col.exchanges[0], col._tasks[0]
                reconnects_before = col.recorder.event_counts["reconnect"]
                clients = list(exchange.clients.values())
                assert sum(len(c.futures) for c in clients) > 0, "no watch_* pending to cancel"
                for client in clients:
                    await client.close()    # ccxt's own close: every pending watch future is cancelled
                closed_ns = time.monotonic_ns()  # the clock of last_seen
                await wait_until(lambda: all(seen[("binance", ch, s)] > closed_ns for ch, s in streams), 30,
                                 what="every stream delivering again after ccxt cancelled its futures")
                assert not runner.done(), "the exchange runner ended: the collector would run without it"
                assert col.recorder.event_counts["reconnect"] > reconnects_before

    asyncio.run(asyncio.wait_for(body(), 90))

