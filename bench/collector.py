"""Collector benchmarks against the loopback exchange, with baselines measured in the same run.

1. CPU seconds per 10,000 messages: `fluxforge collect` (tap + queue + journals + fsync +
   Parquet finishing) vs plain ccxt.pro consuming the same loopback stream without writing
   (target <= 1.25x).
2. Highest sustained message rate on one core without drops (collector pinned to one CPU).
3. RSS with 20 symbols x 3 channels (target <= 150 MB).
4. Bytes per book row (format 2: snapshots + deltas): bronze Parquet vs the same rows as NDJSON
   (target >= 8x).  Bytes per update on real books: bench/bronze_bytes.py.
5. RSS at the queue's block ceiling with depth-50 books (a writer slower than the streams):
   bounded in rows only (`queue_max_mb` unbounded, the old behaviour) vs rows + bytes
   (the default `queue_max_mb`), each over a baseline whose queue never fills; the collector
   unit's MemoryHigh is 256 MB.  `python bench/collector.py --only ceiling` runs just this.
6. Cost of Prometheus metrics: CPU per 10,000 messages with `metrics.enabled` true (scraped
   every 5 s) vs false, in paired rounds (off and on at the same time, each against its own
   loopback simulating the same market; target <= 1.03x), plus the
   share of the collector's CPU that py-spy finds in metrics code and the CPU of one scrape
   (bench/_metrics_cost.py; py-spy comes with `pip install '.[bench]'`).
7. `--only cryptofeed`: CPU per 10,000 messages and RSS of cryptofeed's Binance feed (the feed handler
   users pick instead; `pip install '.[bench]'`) beside `fluxforge collect` and plain ccxt.pro on the
   same loopback stream, and what each of the collector's accelerators buys: the collector with
   uvloop and/or orjson made unimportable vs as shipped (goal: collector <= cryptofeed).

Consumers run as subprocesses (bench/_consumer_runs.py) so their CPU time (user + sys, from
/proc/<pid>/stat) excludes the loopback exchange, which runs in this process, and the machine's other
load does not count as it would in wall time.
Usage: `python bench/collector.py [--quick] [--only cpu|cryptofeed|rss|rate|metrics|ceiling]`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pyarrow.parquet as pq  # noqa: E402

from _consumer_runs import (PLAIN_CCXT, ccxt_dict, collector_argv, collector_config, cryptofeed_argv,  # noqa: E402
                           measure)
from _metrics_cost import bench_metrics_cost  # noqa: E402
from fluxforge.loopback import LoopbackExchange, SimOptions  # noqa: E402

SYMBOLS20 = [f"{b}/USDT" for b in ["BTC", "ETH", "SOL", "BNB", "XRP", "DOGE", "ADA", "AVAX", "DOT", "LINK",
                                   "LTC", "TRX", "ATOM", "NEAR", "UNI", "ETC", "FIL", "APT", "ARB", "OP"]]


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


# what each accelerator bought: `fluxforge collect` with modules made unimportable (_consumer_runs.py)
COLLECTOR_VARIANTS = {"collect, asyncio loop + stdlib json": ("uvloop", "orjson"),
                      "collect, + orjson (ccxt's decoder)": ("uvloop",),
                      "collect, + uvloop": ("orjson",),
                      "collect as shipped (uvloop + orjson)": ()}


async def bench_vs_cryptofeed(tmp: Path, seconds: float, rounds: int = 2) -> None:
    """CPU per 10k messages and RSS: cryptofeed vs `fluxforge collect` (and its variants), same stream.

    Plain ccxt.pro (watching, writing nothing) is the floor of any collector built on unmodified ccxt.
    Runs alternate (the order reversed every round) so that drifting machine load falls on all alike."""
    symbols = SYMBOLS20[:5]
    sim = SimOptions(rate=100, trades_per_update=1.0, ticker_interval=1.0, seed=1)
    totals: dict[str, list[float]] = {}
    rss: dict[str, float] = {}
    counts: dict | None = None
    async with LoopbackExchange("sim", symbols, sim=sim) as lx:
        runs = {"cryptofeed (Binance feed, uvloop)": cryptofeed_argv(lx, symbols),
                "plain ccxt.pro, no writing (asyncio)": [sys.executable, "-c", PLAIN_CCXT,
                                                         json.dumps({"ccxt": ccxt_dict(lx), "symbols": symbols})]}
        for i, (name, without) in enumerate(COLLECTOR_VARIANTS.items()):
            runs[name] = collector_argv(collector_config(tmp / f"vs-cryptofeed-{i}", lx, symbols), without)
        for r in range(rounds):
            for name, argv in (list(runs.items()) if r % 2 == 0 else list(reversed(runs.items()))):
                res = await measure(lx, argv, 5, seconds)
                if name.startswith("cryptofeed"):
                    counts = json.loads(res["stderr"].strip().splitlines()[-1])  # its callbacks: it did the work
                    if sum(counts.values()) < 0.5 * res["messages"]:
                        raise RuntimeError(f"cryptofeed handled {counts} of {res['messages']} messages: {res['stderr']}")
                total = totals.setdefault(name, [0.0, 0])
                total[0] += res["cpu"]
                total[1] += res["messages"]
                rss[name] = max(rss.get(name, 0.0), res["rss_mb"])
    per = {name: cpu / messages * 10_000 for name, (cpu, messages) in totals.items()}
    feed, base, shipped = next(iter(per)), list(COLLECTOR_VARIANTS)[0], list(COLLECTOR_VARIANTS)[-1]
    print(f"[vs cryptofeed] {len(symbols)} symbols, books + trades + tickers, {rounds} alternating rounds of "
          f"{seconds:.0f} s each (cryptofeed's last run: {counts})")
    for name, value in per.items():
        print(f"      {name:<38}: {value:6.3f} CPU s / 10k messages, RSS {rss[name]:4.0f} MB, "
              f"{value / per[feed]:.2f}x cryptofeed, {value / per[base]:.2f}x the asyncio + json collector")
    print(f"      collector as shipped / cryptofeed: CPU per message {per[shipped] / per[feed]:.2f}x   (goal <= 1.00x), "
          f"RSS {rss[shipped] / rss[feed]:.2f}x")


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


async def bench_queue_ceiling(tmp: Path, seconds: float) -> None:
    """Peak RSS when the writer flushes far less often than the queue fills (the block ceiling)."""
    from fluxforge.config import CollectorConfig
    symbols = SYMBOLS20[:10]
    sim = SimOptions(rate=300, trades_per_update=0.5, ticker_interval=1.0, depth=60, seed=4)
    # the writer flushes once a minute, so the queue fills to its ceiling and the readers block;
    # the baseline is the same collector with a 10-row queue (everything but the queue's rows)
    slow = dict(flush_interval=60.0, overflow_policy="block")
    runs = {"baseline (queue_max 10 rows)": dict(slow, queue_max=10),
            "rows only (queue_max_mb unbounded)": dict(slow, queue_max_mb=65536),
            f"rows + bytes (queue_max_mb {CollectorConfig().queue_max_mb:g})": dict(slow)}
    peaks, rates = {}, {}
    async with LoopbackExchange("sim", symbols, sim=sim) as lx:
        for i, (name, opts) in enumerate(runs.items()):
            cfg = collector_config(tmp / f"ceiling{i}", lx, symbols, depth=50, segment_max_seconds=300, **opts)
            res = await measure(lx, collector_argv(cfg), 3, seconds, stop_timeout=120)  # drains a full queue
            peaks[name], rates[name] = res["hwm_mb"], res["messages"] / res["wall"]
    base = peaks[next(iter(runs))]
    print(f"[queue ceiling] {len(symbols)} symbols, depth-50 books, writer flushing once a minute, "
          f"{seconds:.0f} s each (collector MemoryHigh 256 MB)")
    for name, peak in peaks.items():
        print(f"      {name:<36}: peak RSS {peak:6.0f} MB ({peak - base:+5.0f} MB over baseline), "
              f"exchange sent {rates[name]:5.0f} msg/s")
    names = list(runs)
    over_rows, over_bytes = peaks[names[1]] - base, peaks[names[2]] - base
    print(f"      growth at the ceiling, bytes-bounded / rows-only: {over_bytes / max(over_rows, 1):.2f}x")


QUEUE_CEILING = r"""
import json, sys
from fluxforge.collector.recorder import Recorder
from fluxforge.collector.row_queue import RowQueue
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
max_mb = float(sys.argv[1])
q = RowQueue(20000, "block", int(max_mb * 1024 * 1024) if max_mb else None)
rec = Recorder(q, {"binance": 50})
side = lambda sign: [[100.0 + sign * (0.01 + i * 0.01), 1.0 + i * 0.001] for i in range(50)]
message = json.dumps({"bids": side(-1), "asks": side(1)})
base, i = rss(), 0
while not q.dropped_total:  # the readers are blocked and the slack is used up: the ceiling
    book = json.loads(message)  # fresh float objects, as parsing a full-depth message gives
    book["timestamp"] = book["nonce"] = i
    rec.book("binance", "BTC/USDT", book, i)
    i += 1
filled = rss()
buffers, n = q.take()
batch = buffers["orderbook"].to_batch()  # the writer's conversion at flush, the other peak
print(json.dumps({"rows": n, "over_mb": max(filled, rss()) - base}))
"""


def bench_queue_worst_case() -> None:
    """The queue alone at its ceiling when every level is a fresh float (full-depth messages):
    the case the row bound alone let grow to ~300 MB over the baseline."""
    from fluxforge.config import CollectorConfig
    out = {}
    for name, mb in (("rows only (no byte bound)", 0), (f"rows + bytes ({CollectorConfig().queue_max_mb:g} MB)",
                                                         CollectorConfig().queue_max_mb)):
        proc = subprocess.run([sys.executable, "-c", QUEUE_CEILING, str(mb)], capture_output=True, text=True,
                              check=True, cwd=REPO)
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])  # after the resync log line
    print("[queue ceiling, worst case] depth-50 book rows of fresh floats until the blocked queue's slack is used up")
    for name, r in out.items():
        print(f"      {name:<36}: {r['rows']:6d} rows held, RSS {r['over_mb']:+6.0f} MB over the empty queue")
    a, b = out.values()
    print(f"      bytes-bounded / rows-only: {b['over_mb'] / a['over_mb']:.2f}x   "
          f"(collector MemoryHigh 256 MB; its baseline RSS is in the [rss] and [queue ceiling] lines)")


async def bench_metrics(tmp: Path, seconds: float, rounds: int) -> None:
    symbols = SYMBOLS20[:5]
    sim = SimOptions(rate=100, trades_per_update=1.0, ticker_interval=1.0, seed=1)
    await bench_metrics_cost(tmp, symbols, sim, seconds, rounds)


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
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds of the cryptofeed and metrics runs")
    ap.add_argument("--only", choices=["cpu", "cryptofeed", "rss", "rate", "metrics", "ceiling"],
                    help="run one benchmark")
    args = ap.parse_args()
    seconds = 8.0 if args.quick else 20.0
    tmp = Path(tempfile.mkdtemp(prefix="ff-bench-collector-"))
    run = (lambda name: args.only in (None, name))
    try:
        if run("cpu"):
            asyncio.run(bench_cpu(tmp, seconds))
            bench_bytes_per_row(tmp)
        if run("cryptofeed"):
            asyncio.run(bench_vs_cryptofeed(tmp, seconds, args.rounds or 2))
        if run("rss"):
            asyncio.run(bench_rss(tmp, seconds))
        if run("rate"):
            asyncio.run(bench_max_rate(tmp, seconds / 2, [2000, 4000, 8000, 16000, 32000, 64000]))
        if run("ceiling"):
            bench_queue_worst_case()
            asyncio.run(bench_queue_ceiling(tmp, 45.0))
        if run("metrics"):
            asyncio.run(bench_metrics(tmp, seconds, args.rounds or 3))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
