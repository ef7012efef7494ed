"""The real `fluxforge collect` (a subprocess) against the loopback exchange serves /metrics on loopback:
message counters per stream rise between two scrapes, parsed with prometheus_client's parser."""
from __future__ import annotations

import asyncio
import json
import signal
import urllib.request

import yaml
from collector_support import collector_command, subprocess_env, wait_until, write_config
from prometheus_client.parser import text_string_to_metric_families
from test_collector_e2e import binance_entry

from fluxforge.loopback import LoopbackExchange, SimOptions
from fluxforge.observe import metric_defs as M

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def scrape(port: int) -> dict[tuple, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, *sorted(s.labels.items())): s.value
            for fam in text_string_to_metric_families(body) for s in fam.samples}


def received(samples: dict, symbol: str) -> float:
    return sum(v for k, v in samples.items() if k[0] == M.MESSAGES.name + "_total" and ("symbol", symbol) in k[1:])


def test_collect_serves_rising_metrics_on_loopback(tmp_path):
    data = tmp_path / "data"

    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=20, seed=5)) as lx:
            cfg = write_config(tmp_path / "config.yaml", data, [binance_entry(lx, SYMBOLS)])
            raw = yaml.safe_load(cfg.read_text())
            raw["metrics"] = {"collector_port": 0, "textfile_dir": str(tmp_path / "textfiles")}
            cfg.write_text(yaml.safe_dump(raw))
            proc = await asyncio.create_subprocess_exec(*collector_command(cfg), env=subprocess_env(),
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE)
            lines: list[dict] = []

            async def read_log():
                async for line in proc.stderr:
                    try:
                        lines.append(json.loads(line))
                    except ValueError:
                        pass
            reader = asyncio.create_task(read_log())
            try:
                await wait_until(lambda: any(e.get("event") == "metrics_listening" for e in lines), 60,
                                 what="metrics_listening")
                listening = next(e for e in lines if e.get("event") == "metrics_listening")
                assert listening["address"] == "127.0.0.1"
                port = listening["port"]
                loop = asyncio.get_running_loop()

                async def scrape_until(pred) -> dict:
                    while True:
                        samples = await loop.run_in_executor(None, scrape, port)
                        if pred(samples):
                            return samples
                        await asyncio.sleep(0.2)

                first = await asyncio.wait_for(
                    scrape_until(lambda s: all(received(s, sym) > 0 for sym in SYMBOLS)), 60)
                second = await asyncio.wait_for(
                    scrape_until(lambda s: all(received(s, sym) > received(first, sym) for sym in SYMBOLS)), 60)
                proc.send_signal(signal.SIGTERM)
                rc = await asyncio.wait_for(proc.wait(), 20)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                await reader
            assert rc == 0
            return second

    second = asyncio.run(asyncio.wait_for(body(), 120))
    names = {k[0] for k in second}
    for d in (M.ROWS_WRITTEN, M.BYTES_WRITTEN):
        assert d.name + "_total" in names
    assert second[(M.WATCHDOG_HEALTHY.name, ("service", "collector"))] == 1.0
    ages = {k for k in second if k[0] == M.LAST_MESSAGE_AGE.name}
    assert {dict(k[1:])["symbol"] for k in ages} == set(SYMBOLS)
    assert second[(M.FLUSH_DURATION.name + "_count",)] > 0
