"""Benchmark: CPU the loopback exchange spends per 10,000 WebSocket messages it sends.

Why: the collector benchmarks drive the loopback at high rates; it must not be the bottleneck.
Both servers run as subprocesses measured through /proc (user+system CPU) while this process
consumes their streams: the loopback (`fluxforge loopback`, sim, 20 symbols, depth+trade+ticker)
and, as the baseline in the same run, a bare aiohttp WebSocket server that sends pre-encoded
depthUpdate frames at the same message rate.  Prints the ratio loopback / baseline.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import aiohttp

from fluxforge.loopback import LoopbackProcess

SYMBOLS = [f"S{i}X/USDT" for i in range(20)]
RATE = "100"  # book updates per second per symbol
SECONDS = 8.0

BARE_SERVER = r"""
import asyncio, json, sys
from aiohttp import web
rate = float(sys.argv[1])
frame = json.dumps({"e": "depthUpdate", "E": 1, "s": "S0XUSDT", "U": 1, "u": 4,
                    "b": [["100.01", "1.00000"], ["99.98", "0.50000"]], "a": [["100.03", "0.20000"]]})
async def ws_handler(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    while not ws.closed:
        due = int((loop.time() - start) * rate) - sent
        for _ in range(due):
            await ws.send_str(frame)
        sent += max(due, 0)
        await asyncio.sleep(0.005)
    return ws
app = web.Application()
app.router.add_get("/ws", ws_handler)
async def main():
    runner = web.AppRunner(app); await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0); await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def consume(url: str, pid: int, subscribe: dict | None) -> tuple[int, float, float]:
    """(messages, wall seconds, server CPU seconds) over SECONDS of streaming."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        if subscribe:
            await ws.send_str(json.dumps(subscribe))
        await ws.receive()
        await asyncio.sleep(1.0)  # warm up
        while True:  # drain the backlog
            try:
                await asyncio.wait_for(ws.receive(), 0.001)
            except asyncio.TimeoutError:
                break
        n, cpu0, t0 = 0, cpu_seconds(pid), time.monotonic()
        while time.monotonic() - t0 < SECONDS:
            await ws.receive()
            n += 1
        return n, time.monotonic() - t0, cpu_seconds(pid) - cpu0


def main() -> int:
    with LoopbackProcess(["--symbols", ",".join(SYMBOLS), "--rate", RATE, "--seed", "1"]) as lp:
        streams = [f"{s.replace('/', '').lower()}@{c}" for s in SYMBOLS for c in ("depth@100ms", "trade", "ticker")]
        n, wall, cpu = asyncio.run(consume(f"{lp.info['url'].replace('http', 'ws')}/ws/0", lp.pid,
                                           {"method": "SUBSCRIBE", "params": streams, "id": 1}))
    rate = n / wall
    bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(rate)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(bare.stdout.readline())
        bn, bwall, bcpu = asyncio.run(consume(f"ws://127.0.0.1:{port}/ws", bare.pid, None))
    finally:
        bare.terminate()
        bare.wait(10)
    per10k, bare_per10k = cpu / n * 10_000, bcpu / bn * 10_000
    print(f"loopback sim {len(SYMBOLS)} symbols x {RATE}/s: {rate:,.0f} msg/s, "
          f"{per10k:.3f} server CPU-s per 10k messages ({cpu / wall:.0%} of a core)")
    print(f"baseline bare aiohttp, pre-encoded frames: {bn / bwall:,.0f} msg/s, {bare_per10k:.3f} CPU-s per 10k")
    print(f"ratio loopback / baseline: {per10k / bare_per10k:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
