"""Running one market-data consumer as a subprocess and measuring it: what bench/collector.py's runs share.

Why subprocesses: a consumer's CPU time (user + sys, from /proc/<pid>/stat) then excludes the
loopback exchange, which runs in the benchmark's own process, and is not distorted by the
other load on the machine the way wall time is.  The consumers: `fluxforge collect` (optionally
with some of its accelerators blocked, see `collector_argv`), plain ccxt.pro without writing, and
cryptofeed (bench/_cryptofeed_consumer.py).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

TICKS = os.sysconf("SC_CLK_TCK")
PLAIN_CCXT = r"""
import asyncio, json, sys, ccxt.pro
cfg = json.loads(sys.argv[1]); symbols = cfg["symbols"]
async def loop(f):
    while True:
        await f()
async def main():
    ex = ccxt.pro.binance(cfg["ccxt"])
    await ex.load_markets()
    await asyncio.gather(loop(lambda: ex.watch_order_book_for_symbols(symbols)),
                         loop(lambda: ex.watch_trades_for_symbols(symbols)),
                         loop(lambda: ex.watch_tickers(symbols)))
asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def sent_messages(lx) -> int:
    return sum(s.messages for s in lx.sent.streams.values())


def ccxt_dict(lx) -> dict:
    d = lx.ccxt_config("binance")
    d["enableRateLimit"] = False
    d["options"]["watchTickers"] = {"name": "ticker"}
    return d


def collector_config(tmp: Path, lx, symbols: list[str], depth: int = 20, metrics: dict | None = None,
                     **collector) -> Path:
    cfg = {
        "data_dir": str(tmp / "data"), "host_id": "bench",
        "exchanges": [{"name": "binance", "ccxt": ccxt_dict(lx), "symbols": symbols, "book_depth": depth}],
        "collector": {"flush_interval": 1.0, "segment_max_seconds": 30, "min_free_mb": 0, "snapshot_spacing": 0.02,
                      **collector},
        "logging": {"level": "WARNING", "format": "json"},
    }
    if metrics is not None:
        cfg["metrics"] = metrics
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


async def measure(lx, argv: list[str], warmup: float, seconds: float, cpu: int | None = None,
                  stop_timeout: float = 15.0, during=None) -> dict:
    """Run a consumer subprocess; CPU, messages and RSS over `seconds` after `warmup` (`during`: a
    coroutine run meanwhile, e.g. a scraper, or a function of the consumer's pid giving one)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    if callable(during):
        during = during(proc.pid)
    side = asyncio.ensure_future(during) if during is not None else None
    died = False
    try:
        await asyncio.sleep(warmup)
        c0, m0, t0 = cpu_seconds(proc.pid), sent_messages(lx), time.monotonic()
        await asyncio.sleep(seconds)
        c1, m1, t1 = cpu_seconds(proc.pid), sent_messages(lx), time.monotonic()
        rss, hwm = rss_mb(proc.pid), rss_mb(proc.pid, "VmHWM")
        died = proc.returncode is not None  # a zombie's /proc entry still reads: no figure from it
    except (FileNotFoundError, ProcessLookupError):  # /proc/<pid> gone: it exited
        died = True
    finally:
        if side is not None:
            side.cancel()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), stop_timeout)
        except asyncio.TimeoutError:
            try:
                proc.kill()
            except ProcessLookupError:  # it exited just now
                pass
            await proc.wait()
    err = (await proc.stderr.read()).decode()
    if died:
        raise RuntimeError(f"consumer {' '.join(argv[:3])[:120]} exited (rc {proc.returncode}) before the "
                           f"measurement ended:\n{err[-3000:]}")
    return {"cpu": c1 - c0, "messages": m1 - m0, "wall": t1 - t0, "rss_mb": rss, "hwm_mb": hwm,
            "stderr": err, "rc": proc.returncode}


# `fluxforge collect` with some optional modules made unimportable (`sys.modules[name] = None`), so
# the code that prefers them takes its fallback: ccxt decodes with the stdlib json without orjson,
# and the collector runs asyncio's own loop without uvloop.
COLLECT_WITHOUT = r"""
import json, sys
blocked, argv = json.loads(sys.argv[1]), sys.argv[2:]
for name in blocked:
    sys.modules[name] = None
from fluxforge.cli import main
sys.exit(main(argv))
"""


def collector_argv(config: Path, without: tuple[str, ...] = ()) -> list[str]:
    """`fluxforge collect` as shipped, or `without` some of the modules it would use if importable."""
    args = ["collect", "--config", str(config)]
    if without:
        return [sys.executable, "-c", COLLECT_WITHOUT, json.dumps(list(without)), *args]
    return [sys.executable, "-m", "fluxforge.cli", *args]


def cryptofeed_argv(lx, symbols: list[str]) -> list[str]:
    """cryptofeed's Binance feed (its default uvloop) on the loopback; see bench/_cryptofeed_consumer.py."""
    script = Path(__file__).resolve().parent / "_cryptofeed_consumer.py"
    return [sys.executable, str(script), json.dumps({"url": lx.url, "ws_url": lx.ws_url, "symbols": symbols})]
