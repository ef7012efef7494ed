"""Collector benchmarks against the loopback exchange, with baselines measured in the same run.

1. CPU seconds per 10,000 messages: `fluxforge collect` (tap + queue + journals + fsync +
   Parquet finishing) vs plain ccxt.pro consuming the same loopback stream without writing
   (target <= 1.25x).
2. Highest sustained message rate on one core without drops (collector pinned to one CPU).
3. RSS with 20 symbols x 3 channels (target <= 150 MB).
4. Bytes per book row (format 2: snapshots + deltas): bronze Parquet vs the same rows as NDJSON
   (target >= 8x).  Bytes per update on real books: bench/bronze_bytes.py.

Consumers run as subprocesses so their CPU time (from /proc/<pid>/stat) excludes the
loopback exchange, which runs in this process.  Usage: `python bench/collector.py [--quick]`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402

from fluxforge.loopback import LoopbackExchange, SimOptions  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
SYMBOLS20 = [f"{b}/USDT" for b in ["BTC", "ETH", "SOL", "BNB", "XRP", "DOGE", "ADA", "AVAX", "DOT", "LINK",
                                   "LTC", "TRX", "ATOM", "NEAR", "UNI", "ETC", "FIL", "APT", "ARB", "OP"]]

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


def collector_config(tmp: Path, lx, symbols: list[str], **collector) -> Path:
    cfg = {
        "data_dir": str(tmp / "data"), "host_id": "bench",
        "exchanges": [{"name": "binance", "ccxt": ccxt_dict(lx), "symbols": symbols, "book_depth": 20}],
        "collector": {"flush_interval": 1.0, "segment_max_seconds": 30, "min_free_mb": 0, "snapshot_spacing": 0.02,
                      **collector},
        "logging": {"level": "WARNING", "format": "json"},
    }
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


async def measure(lx, argv: list[str], warmup: float, seconds: float, cpu: int | None = None) -> dict:
    """Run a consumer subprocess; CPU, messages and RSS over `seconds` after `warmup`."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    try:
        await asyncio.sleep(warmup)
        c0, m0, t0 = cpu_seconds(proc.pid), sent_messages(lx), time.monotonic()
        await asyncio.sleep(seconds)
        c1, m1, t1 = cpu_seconds(proc.pid), sent_messages(lx), time.monotonic()
        rss, hwm = rss_mb(proc.pid), rss_mb(proc.pid, "VmHWM")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
    err = (await proc.stderr.read()).decode()
    return {"cpu": c1 - c0, "messages": m1 - m0, "wall": t1 - t0, "rss_mb": rss, "hwm_mb": hwm,
            "stderr": err, "rc": proc.returncode}


def collector_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "fluxforge.cli", "collect", "--config", str(config)]


def drops_in(data: Path) -> int:
    total = 0
    for seg in (data / "segments" / "ready").glob("seg-*"):
        ev = pq.read_table(seg / "events.parquet").to_pylist()
        total += sum(e["count"] or 0 for e in ev if e["event"] == "dropped")
    return total


async def bench_cpu(tmp: Path, seconds: float) -> None:
    symbols = SYMBOLS20[:5]
    sim = SimOptions(rate=100, trades_per_update=1.0, ticker_interval=1.0, seed=1)
    async with LoopbackExchange("sim", symbols, sim=sim) as lx:
        plain = await measure(lx, [sys.executable, "-c", PLAIN_CCXT, json.dumps({"ccxt": ccxt_dict(lx),
                                                                                "symbols": symbols})], 4, seconds)
        col = await measure(lx, collector_argv(collector_config(tmp / "cpu", lx, symbols)), 4, seconds)
    per_plain = plain["cpu"] / plain["messages"] * 10_000
    per_col = col["cpu"] / col["messages"] * 10_000
    print(f"[cpu] {len(symbols)} symbols, {plain['messages'] / plain['wall']:.0f} msg/s, {seconds:.0f} s each")
    print(f"      plain ccxt.pro (no writing): {per_plain:.3f} CPU s / 10k messages")
    print(f"      fluxforge collect          : {per_col:.3f} CPU s / 10k messages")
    print(f"      ratio collector / ccxt     : {per_col / per_plain:.2f}x   (target <= 1.25x)")


async def bench_max_rate(tmp: Path, seconds: float, rates: list[int]) -> None:
    symbols = SYMBOLS20[:4]
    best = None
    generator_limited = False
    print(f"[max rate] collector pinned to CPU 0, {len(symbols)} symbols, books+trades+tickers, flush 0.25 s")
    for rate in rates:
        run = tmp / f"rate{rate}"
        sim = SimOptions(rate=rate / len(symbols) / 2, trades_per_update=1.0, ticker_interval=1.0, seed=2)
        async with LoopbackExchange("sim", symbols, sim=sim) as lx:
            # drop policy so falling behind shows as drops; a 0.25 s flush keeps the default
            # queue_max (20000 rows) well above one flush's worth even at ~10k msg/s
            res = await measure(lx, collector_argv(collector_config(run, lx, symbols, overflow_policy="drop",
                                                                    queue_max=20000, flush_interval=0.25)),
                                4, seconds, cpu=0)
        got = res["messages"] / res["wall"]
        util = res["cpu"] / res["wall"]
        drops = drops_in(run / "data")
        keeps_up = drops == 0 and util < 0.9
        generator_limited = got < 0.9 * rate
        verdict = "NOT sustained" if not keeps_up else ("sustained, generator-limited" if generator_limited
                                                          else "sustained")
        print(f"      target {rate:6d} msg/s: delivered {got:7.0f} msg/s, collector CPU {util:5.0%}, drops {drops}"
              f" -> {verdict}")
        if keeps_up:
            best = max(best or 0.0, got)
        if not keeps_up or generator_limited:
            break
    print(f"      highest sustained rate on one core: {best or 0:.0f} msg/s"
          + (" (then the in-process loopback generator, not the collector, hit its limit)"
             if generator_limited else ""))


async def bench_rss(tmp: Path, seconds: float) -> None:
    sim = SimOptions(rate=10, trades_per_update=0.5, ticker_interval=1.0, seed=3)
    async with LoopbackExchange("sim", SYMBOLS20, sim=sim) as lx:
        res = await measure(lx, collector_argv(collector_config(tmp / "rss", lx, SYMBOLS20,
                                                                segment_max_seconds=5)), 5, seconds)
    print(f"[rss] 20 symbols x 3 channels, {res['messages'] / res['wall']:.0f} msg/s for {seconds:.0f} s: "
          f"RSS {res['rss_mb']:.0f} MB, peak {res['hwm_mb']:.0f} MB   (target <= 150 MB)")


def bench_bytes_per_row(tmp: Path) -> None:
    books = []
    for seg in sorted((tmp / "cpu" / "data" / "segments" / "ready").glob("seg-*")):
        books.append(seg / "orderbook.parquet")
    rows = 0
    parquet_bytes = 0
    ndjson_bytes = 0
    for path in books:
        t = pq.read_table(path)
        rows += t.num_rows
        parquet_bytes += path.stat().st_size
        for r in t.to_pylist():
            ndjson_bytes += len(json.dumps(r, separators=(",", ":"))) + 1
    if not rows:
        print("[bytes/row] no book rows collected")
        return
    print(f"[bytes/row] {rows} book rows (snapshots + deltas): Parquet {parquet_bytes / rows:.1f} B/row, "
          f"NDJSON {ndjson_bytes / rows:.1f} B/row -> {ndjson_bytes / parquet_bytes:.1f}x smaller   (target >= 8x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    args = ap.parse_args()
    seconds = 8.0 if args.quick else 20.0
    tmp = Path(tempfile.mkdtemp(prefix="ff-bench-collector-"))
    try:
        asyncio.run(bench_cpu(tmp, seconds))
        bench_bytes_per_row(tmp)
        asyncio.run(bench_rss(tmp, seconds))
        asyncio.run(bench_max_rate(tmp, seconds / 2, [2000, 4000, 8000, 16000, 32000, 64000]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
