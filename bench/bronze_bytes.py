"""Bronze order book bytes per book update, on the real Binance captures.

Replays ../shared/data/binance-spot (BTCUSDT + ETHUSDT) through the loopback
exchange (Binance protocol) into `fluxforge collect` (a subprocess, books only,
`book_depth` 50, one segment) and divides the finished `orderbook.parquet` bytes
by the number of book messages the exchange sent.  Run it on two trees to
compare formats: format 1 wrote the top 50 levels per update, format 2 writes
each message's changed levels plus the snapshots.

Also prints the collector's CPU time per book update over the replay (from
/proc/<pid>/stat, start-up excluded), the figure that shows what recording costs
per message on real books (~36 levels per diff).

Usage: `python bench/bronze_bytes.py [--depth 50] [--captures DIR]`
"""
from __future__ import annotations

import argparse
import asyncio
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

from fluxforge.loopback import LoopbackExchange  # noqa: E402

CAPTURES = REPO.parent / "shared" / "data" / "binance-spot"
SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(tmp: Path, depth: int, captures: Path, keep: Path | None) -> None:
    files = [captures / "btcusdt_20240808.gz", captures / "ethusdt_20240808.gz"]
    lx = LoopbackExchange("replay", replay_files=files, speed=0)
    lx.freeze()
    async with lx:
        ccxt = lx.ccxt_config("binance")
        ccxt["enableRateLimit"] = False
        cfg = {"data_dir": str(tmp / "data"), "host_id": "bench",
               "exchanges": [{"name": "binance", "ccxt": ccxt, "symbols": SYMBOLS, "book_depth": depth,
                              "channels": ["orderbook"]}],
               "collector": {"flush_interval": 1.0, "segment_max_seconds": 3600, "min_free_mb": 0,
                             "stall_timeout": 300.0},
               "logging": {"level": "WARNING", "format": "json"}}
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "fluxforge.cli", "collect", "--config",
                                                    str(tmp / "config.yaml"), stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while lx.sent.snapshots < len(SYMBOLS) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            cpu0 = cpu_seconds(proc.pid)
            lx.freeze(False)
            while not lx.source.finished:
                await asyncio.sleep(0.2)
            await asyncio.sleep(5.0)  # the last frames handled and flushed
            cpu = cpu_seconds(proc.pid) - cpu0
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    updates = sum(lx.sent.stream("binance", s, "orderbook").messages for s in SYMBOLS)
    rows = size = 0
    for seg in (tmp / "data" / "segments" / "ready").glob("seg-*"):
        path = seg / "orderbook.parquet"
        if keep:
            shutil.copy(path, keep / f"{seg.name}-orderbook.parquet")
        rows += pq.read_metadata(path).num_rows
        size += path.stat().st_size
    print(f"[bronze bytes] {updates} book updates sent, {rows} orderbook rows, {size} bytes: "
          f"{size / updates:.1f} B/update (book_depth {depth}; tree {REPO})")
    print(f"[collector cpu] {cpu:.2f} CPU s over the replay: {cpu / updates * 1e6:.0f} us per book update")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--captures", type=Path, default=CAPTURES)
    ap.add_argument("--keep", type=Path, help="copy the orderbook.parquet files into this directory")
    args = ap.parse_args()
    if not args.captures.is_dir():
        sys.exit(f"{args.captures} not found")
    tmp = Path(tempfile.mkdtemp(prefix="ff-bench-bronze-"))
    try:
        asyncio.run(run(tmp, args.depth, args.captures, args.keep))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
