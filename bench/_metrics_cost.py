"""What Prometheus metrics cost `fluxforge collect`: the figures `bench/collector.py --only metrics` prints.

Why more than one ratio: on a shared 2-core machine the collector's CPU per message moves by
+-6% between runs, twice the 3% budget, so "on / off" alone can neither confirm nor refute
it.  Three figures, all from the same invocation against the same loopback stream:

1. Paired rounds: a metrics-off and a metrics-on collector run at the same time, each against
   its own loopback exchange simulating the same market (same seed; the two swap roles every
   round), one on/off ratio per round; the median and the spread (min..max) beside the ratio
   of the sums.  Run together, a pair shares the machine's load of the moment (back-to-back
   runs on a shared 2-core machine differed by up to 18% from load alone); the spread shows
   what noise is left.
2. Attribution: one metrics-on run sampled by py-spy (a sampling profiler in its own process,
   non-blocking: it costs the collector nothing and does not distort what it measures; cProfile
   would charge its per-call overhead to every small function, and counter increments are
   small functions, so it over-counts exactly what is being measured).  Only the thread
   holding the GIL is sampled (`--gil`): without it py-spy counts threads that wait (uvloop in
   epoll, the HTTP server's poll loop) as busy whenever the loaded machine leaves them
   runnable (~65% of all samples in a trial run).  Metrics code is Python and holds the GIL; what
   runs without it (compression, fsync, Arrow) is missing from the total, so the share is an
   upper bound; a GIL holder the loaded machine leaves waiting for a CPU still counts (the
   report says how much of the measured CPU the samples cover: 70% and 107% in two runs).  The share of
   samples with metrics code on the stack: feeding the counters (the writer's `flushed()` once
   per flush, fluxforge/observe/) and serving scrapes (prometheus_client's exposition and the
   stdlib HTTP server it runs on), split by the innermost such frame.
3. One scrape: a burst of sequential scrapes of a running collector; its CPU during the burst
   above its rate just before, per scrape, and what that is at the bench's scrape rate and at
   contrib/prometheus's (every 15 s) as a share of the collector's CPU.
"""
from __future__ import annotations

import asyncio
import math
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from _consumer_runs import collector_argv, collector_config, cpu_seconds, measure

SCRAPE_EVERY = 5.0          # the bench's scrape interval
PROMETHEUS_EVERY = 15.0     # contrib/prometheus/scrape.yml's scrape_interval
PROFILE_HZ = 500
BURST_SCRAPES = 300         # at most, in at most BURST_SECONDS
BURST_SECONDS = 15.0

# a stack frame's file, py-spy --full-filenames: which part of the metrics it belongs to
_SERVING_FILES = ("/prometheus_client/exposition.py", "/socketserver.py", "/http/server.py")
_PACKAGES = (("prometheus_client", "/prometheus_client/"), ("fluxforge.observe", "/fluxforge/observe/"),
             ("http.server", "/socketserver.py"), ("http.server", "/http/server.py"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> bytes:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()


async def scrape_every(port: int, interval: float, sizes: list[int]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        try:
            sizes.append(len(await loop.run_in_executor(None, scrape, port)))
        except OSError:
            pass  # not listening yet during warm-up


def metrics_config(tmp: Path, lx, symbols: list[str], enabled: bool, port: int) -> Path:
    metrics = {"enabled": enabled, "collector_port": port, "etl_port": 0, "textfile_dir": str(tmp / "textfiles")}
    return collector_config(tmp, lx, symbols, metrics=metrics)


# -- 1. paired rounds ---------------------------------------------------------------
async def paired_rounds(pair_lx: tuple, tmp: Path, symbols: list[str], seconds: float, rounds: int,
                        sizes: list[int]) -> list[dict[bool, tuple[float, int]]]:
    """Per round {enabled: (CPU s, messages)}: off and on at the same time, on the two loopbacks in turn."""
    out = []
    for r in range(rounds):
        runs = []
        for enabled, lx in zip((False, True), pair_lx if r % 2 == 0 else pair_lx[::-1]):
            port = free_port()
            cfg = metrics_config(tmp / f"metrics-{r}-{enabled}", lx, symbols, enabled, port)
            runs.append(measure(lx, collector_argv(cfg), 4, seconds,
                                during=scrape_every(port, SCRAPE_EVERY, sizes) if enabled else None))
        off, on = await asyncio.gather(*runs)
        out.append({False: (off["cpu"], off["messages"]), True: (on["cpu"], on["messages"])})
    return out


def per_10k(cpu: float, messages: int) -> float:
    return cpu / messages * 10_000


# -- 2. attribution -------------------------------------------------------------------
def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).is_file() else None


class Sampler:
    """py-spy recording a running process for `seconds` after `delay` (raw collapsed stacks)."""

    def __init__(self, exe: str, out: Path, delay: float, seconds: float):
        self.exe, self.out, self.delay, self.seconds = exe, out, delay, seconds
        self.proc: asyncio.subprocess.Process | None = None

    async def run(self, pid: int) -> None:
        await asyncio.sleep(self.delay)
        self.proc = await asyncio.create_subprocess_exec(
            self.exe, "record", "--pid", str(pid), "--rate", str(PROFILE_HZ), "--duration", str(int(self.seconds)),
            "--nonblocking", "--gil", "--full-filenames", "--format", "raw", "--output", str(self.out),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await self.proc.wait()

    async def stacks(self) -> Counter[tuple[str, ...]]:
        if self.proc is None:
            raise RuntimeError("py-spy never started")
        if self.proc.returncode is None:
            await asyncio.wait_for(self.proc.wait(), 60)
        if not self.out.is_file():
            raise RuntimeError(f"py-spy wrote nothing: {(await self.proc.stderr.read()).decode()[-2000:]}")
        return parse_raw(self.out.read_text())


def parse_raw(text: str) -> Counter[tuple[str, ...]]:
    """py-spy's raw format: `root;...;leaf count` per line, frames `function (file:line)`."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks[tuple(frames.split(";"))] += int(count)
    return stacks


def attribute(stacks: Counter[tuple[str, ...]]) -> dict:
    """Samples: total, feeding counters vs serving scrapes, and by the innermost metrics frame's package."""
    total = sum(stacks.values())
    parts: Counter[str] = Counter()
    packages: Counter[tuple[str, str]] = Counter()
    for frames, n in stacks.items():
        owner = None
        for frame in reversed(frames):  # leaf first: the innermost metrics frame owns the sample
            owner = next((name for name, marker in _PACKAGES if marker in frame), None)
            if owner is not None:
                break
        if owner is None:
            continue
        part = "serving" if any(f in frame for frame in frames for f in _SERVING_FILES) else "feeding"
        parts[part] += n
        packages[(part, owner)] += n
    return {"total": total, "parts": parts, "packages": packages}


async def profiled_run(lx, tmp: Path, symbols: list[str], seconds: float, exe: str) -> tuple[dict, dict, int]:
    """A metrics-on run (scraped every SCRAPE_EVERY) sampled by py-spy: (attribution, measure result, scrapes)."""
    port = free_port()
    cfg = metrics_config(tmp / "metrics-profiled", lx, symbols, True, port)
    sampler = Sampler(exe, tmp / "metrics-profile.txt", 4, seconds - 1)
    sizes: list[int] = []

    async def during(pid: int) -> None:
        await asyncio.gather(sampler.run(pid), scrape_every(port, SCRAPE_EVERY, sizes))

    res = await measure(lx, collector_argv(cfg), 4, seconds, during=during)
    return attribute(await sampler.stacks()), res, len(sizes)


# -- 3. one scrape ----------------------------------------------------------------------
async def scrape_burst(lx, tmp: Path, symbols: list[str], result: dict) -> None:
    """Collector CPU per scrape: a burst of sequential scrapes against the collector's rate just before it."""
    port = free_port()
    cfg = metrics_config(tmp / "metrics-burst", lx, symbols, True, port)

    async def during(pid: int) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(4)
        await loop.run_in_executor(None, scrape, port)  # listening; the first scrape's set-up is not the cost
        c0, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(5)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        size = n = 0
        while n < BURST_SCRAPES and time.monotonic() - t1 < BURST_SECONDS:
            size = len(await loop.run_in_executor(None, scrape, port))
            n += 1
        c2, t2 = cpu_seconds(pid), time.monotonic()
        base_rate = (c1 - c0) / (t1 - t0)
        result.update(base_rate=base_rate, scrapes=n, wall_ms=(t2 - t1) / n * 1000, bytes=size,
                      cpu_ms=max(0.0, (c2 - c1) - base_rate * (t2 - t1)) / n * 1000)

    await measure(lx, collector_argv(cfg), 0, 4 + 5 + BURST_SECONDS + 6, during=during)
    if "cpu_ms" not in result:
        raise RuntimeError("the scrape burst did not finish in time")


# -- report -------------------------------------------------------------------------------
def share(n: int, total: int) -> str:
    """n / total as a percentage with its sampling error (binomial standard error)."""
    p = n / total if total else 0.0
    return f"{100 * p:5.2f}% +- {100 * math.sqrt(p * (1 - p) / total) if total else 0:.2f}"


async def bench_metrics_cost(tmp: Path, symbols: list[str], sim, seconds: float, rounds: int) -> None:
    """All three figures against loopback exchanges simulating `sim` for `symbols`."""
    from fluxforge.loopback import LoopbackExchange

    sizes: list[int] = []
    async with LoopbackExchange("sim", symbols, sim=sim) as lx, LoopbackExchange("sim", symbols, sim=sim) as twin:
        pairs = await paired_rounds((lx, twin), tmp, symbols, seconds, rounds, sizes)
        exe = py_spy()
        profiled = await profiled_run(lx, tmp, symbols, seconds * 2, exe) if exe else None
        burst: dict = {}
        await scrape_burst(lx, tmp, symbols, burst)

    sums = {e: (sum(p[e][0] for p in pairs), sum(p[e][1] for p in pairs)) for e in (False, True)}
    off, on = per_10k(*sums[False]), per_10k(*sums[True])
    ratios = [per_10k(*p[True]) / per_10k(*p[False]) for p in pairs]
    print(f"[metrics] {len(symbols)} symbols, {rounds} paired rounds (off and on at the same time) of {seconds:.0f} s "
          f"each, scraped every {SCRAPE_EVERY:.0f} s: {len(sizes)} scrapes of ~{(sum(sizes) // max(len(sizes), 1)) / 1024:.0f} KiB")
    print(f"      metrics.enabled: false : {off:.3f} CPU s / 10k messages (all rounds)")
    print(f"      metrics.enabled: true  : {on:.3f} CPU s / 10k messages (all rounds)")
    print(f"      ratio on / off per round: {' '.join(f'{r:.3f}' for r in ratios)}")
    print(f"      ratio on / off          : median {statistics.median(ratios):.3f}x, spread "
          f"{min(ratios):.3f}..{max(ratios):.3f}, of the sums {on / off:.3f}x   (target <= 1.03x)")
    if profiled is None:
        print("[metrics attribution] skipped: py-spy is not installed (pip install '.[bench]')")
    else:
        att, res, scrapes = profiled
        total, parts, pk = att["total"], att["parts"], att["packages"]
        window = seconds * 2 - 1
        covered = total / PROFILE_HZ / (res["cpu"] * window / (seconds * 2))
        print(f"[metrics attribution] py-spy --gil at {PROFILE_HZ} Hz (sampling, non-blocking; cProfile would "
              f"over-count small functions such as counter increments) over {window:.0f} s of a metrics-on run, "
              f"{scrapes} scrapes: {total} samples = {covered:.0%} of the collector's CPU in the window (less: work "
              f"without the GIL; more: a GIL holder waiting for a busy CPU), "
              f"{per_10k(res['cpu'], res['messages']):.3f} CPU s / 10k messages")
        print(f"      all metrics code        : {share(sum(parts.values()), total)} % of the collector's samples")
        for part, what in (("feeding", "feeding counters (flushes)"), ("serving", "serving scrapes")):
            split = ", ".join(f"{owner} {share(n, total)}" for (p, owner), n in sorted(pk.items()) if p == part)
            print(f"      {what:<24}: {share(parts[part], total)}   ({split or 'no sample'})")
    cpu_ms, base = burst["cpu_ms"], burst["base_rate"]
    print(f"[metrics scrape] {burst['scrapes']} sequential scrapes of {burst['bytes'] / 1024:.0f} KiB: "
          f"{cpu_ms:.2f} ms collector CPU each ({burst['wall_ms']:.1f} ms wall); the collector's own rate "
          f"{base * 1000:.0f} ms CPU / s")
    for every in (SCRAPE_EVERY, PROMETHEUS_EVERY):
        print(f"      scraped every {every:2.0f} s: {cpu_ms / every:.3f} ms CPU / s = "
              f"{100 * cpu_ms / every / (base * 1000):.2f}% of the collector's CPU")
