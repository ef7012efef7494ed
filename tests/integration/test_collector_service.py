"""systemd behaviour of the collector with a test NOTIFY_SOCKET: READY=1 after the first
durable batch, STATUS=, WATCHDOG=1 only while healthy (none while the loop or the writer is
blocked), STOPPING=1 and a clean exit on SIGTERM, exit 78 on bad config."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time

from collector_support import (collector_command, make_config, ready_segments, running_collector, subprocess_env,
                               wait_until, write_config)
from notify_listener import NotifyListener
from test_collector_e2e import binance_entry

from fluxforge.loopback import LoopbackExchange, SimOptions
from fluxforge.service import SystemdNotifier

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


class ReadyProbe(SystemdNotifier):
    """A real notifier that also records, at the moment READY=1 is sent, how many rows were durable."""

    def __init__(self, address: str):
        super().__init__(address)
        self.collector = None
        self.durable_at_ready: int | None = None

    def ready(self, status: str | None = None) -> None:
        self.durable_at_ready = self.collector.writer.durable_rows
        super().ready(status)




def test_watchdog_pings_only_while_healthy(tmp_path):
    listener = NotifyListener(tmp_path / "notify.sock")

    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=20, seed=3)) as lx:
            cfg = make_config(tmp_path / "data", [binance_entry(lx, SYMBOLS)], max_flush_age=1.0)
            probe = ReadyProbe(listener.path)
            async with running_collector(cfg, notifier=probe, watchdog_interval=0.1) as col:
                probe.collector = col  # before the collector's task first runs
                await wait_until(lambda: listener.has("READY=1") and listener.has("WATCHDOG=1")
                                 and listener.has("STATUS="), 30, what="READY, STATUS and WATCHDOG")
                # READY=1 was sent only once a batch of market data was durable
                assert probe.durable_at_ready is not None and probe.durable_at_ready > 0
                status = [m for m in listener.messages if m.startswith("STATUS=") and "msg/s" in m]
                assert status and "binance" in status[-1] and "queue" in status[-1] and "seg-test-" in status[-1]

                # 1) the event loop itself is blocked: nothing can ping
                t0 = time.monotonic()
                time.sleep(1.5)  # deliberately blocks this (the collector's) loop
                t1 = time.monotonic()
                await asyncio.sleep(0.5)
                assert not [t for t in listener.times("WATCHDOG=1") if t0 + 0.05 < t < t1]
                assert listener.times("WATCHDOG=1")[-1] > t1  # pings resumed

                # 2) the loop runs but the writer is stuck: health fails on flush age, pings stop
                stuck = col.writer._io.submit(time.sleep, 3.0)
                t2 = time.monotonic()
                await asyncio.sleep(3.5)
                assert stuck.done()
                pings = listener.times("WATCHDOG=1")
                assert not [t for t in pings if t2 + 1.3 < t < t2 + 2.9], "pinged while the writer was stuck"
                await wait_until(lambda: listener.times("WATCHDOG=1")[-1] > t2 + 3.0, 10, what="pings resume")
                assert col.lag.max_lag >= 1.0  # the blocked loop was noticed

    try:
        asyncio.run(asyncio.wait_for(body(), 90))
    finally:
        listener.close()


def test_subprocess_ready_status_watchdog_then_stopping_on_sigterm(tmp_path):
    listener = NotifyListener(tmp_path / "notify.sock")
    data = tmp_path / "data"
    modules = tmp_path / "modules.json"

    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=20, seed=4)) as lx:
            cfg = write_config(tmp_path / "config.yaml", data, [binance_entry(lx, SYMBOLS)])
            env = subprocess_env(NOTIFY_SOCKET=listener.path, WATCHDOG_USEC="1000000")
            proc = await asyncio.create_subprocess_exec(*collector_command(cfg, modules_to=modules), env=env,
                                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                await wait_until(lambda: listener.has("READY=1") and len(listener.times("WATCHDOG=1")) >= 2
                                 and listener.has("STATUS="), 60, what="READY/WATCHDOG/STATUS from the service")
                t_term = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                rc = await asyncio.wait_for(proc.wait(), 15)
                took = time.monotonic() - t_term
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            err = (await proc.stderr.read()).decode()
            assert rc == 0, err[-2000:]
            assert took < 10.0
            assert listener.has("STOPPING=1")
            assert min(listener.times("STOPPING=1")) >= t_term
            pings = listener.times("WATCHDOG=1")
            assert len(pings) >= 2 and min(b - a for a, b in zip(pings, pings[1:])) > 0.3  # about every 0.5 s
            assert '"event": "segment_rotated"' in err and '"event": "collector_ready"' in err
            assert ready_segments(data) and not list((data / "segments" / "active").iterdir())
            # only what it uses (its RSS on a Pi): ccxt's configured exchange alone (collector/ccxt_loader.py),
            # no numpy or pandas (collector/unused_modules.py), no Arrow compute, no feature engine
            loaded = set(json.loads(modules.read_text()))
            assert "ccxt.pro.binance" in loaded and "pyarrow.parquet" in loaded
            unused = {"numpy", "pandas", "pyarrow.compute", "ccxt.async_support.kraken", "ccxt.pro.okx", "ccxt.kraken",
                      "fluxforge.features", "fluxforge.etl.service"}
            assert not unused & loaded

    try:
        asyncio.run(asyncio.wait_for(body(), 90))
    finally:
        listener.close()


def test_bad_config_exits_78(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("collector:\n  flush_interval: -1\nexchanges: []\n")
    r = subprocess.run(collector_command(bad), env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 78 and "collector.flush_interval" in r.stderr
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(f"data_dir: {tmp_path}\nexchanges:\n  - name: notanexchange\n    symbols: [BTC/USDT]\n")
    r = subprocess.run(collector_command(unknown), env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 78 and "exchanges.0.name" in r.stderr
