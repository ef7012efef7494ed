"""Live serving cost: the ETL process's CPU for publishing and sending rows, against computing them.

One synthetic market (SYMBOLS symbols, depth 20, books + trades) goes through the
real ETL (EtlRunner: the baseline, CPU seconds of this process).  Its output rows,
cut the way the live path publishes them (per product and 1 s collector flush, one
table of every symbol's rows that became final in it), are then published to a real hub on a Unix socket with
subscribers of everything: JSON-wire clients as subprocesses (their own CPU is not counted: only
this process's, which is the ETL's in production), `fluxforge live --json` (the Arrow wire, its
JSON lines written by itself) and raw Arrow readers.  Printed, same run:

  compute                      ETL CPU for the segments (baseline)
  serve, 0 subscribers         publish() + replay ring only
  serve, 1 json / 1 cli / 1 arrow / 4 json subscribers, and 1 json + 1 stalled
  replay, json / arrow         one subscriber replaying all the ring holds (`since` 0) once the
                               publishes are done: the ring's rows read and encoded for it
  ratio                        (compute + serve) / compute   (issue 14 target: <= 1.3)

Run: .venv/bin/python bench/live_serving.py [--symbols 4] [--seconds 120] [--hz 20]
The machine may be shared: the figures are what this run measured, nothing more.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

import live  # noqa: E402  (bench/live.py: its subscriber clients)
from etl_support import synthetic_market, write_segments  # noqa: E402
from live_support import feature_parts  # noqa: E402
from fluxforge.config import FeatureOptions  # noqa: E402
from fluxforge.etl.runner import EtlRunner  # noqa: E402
from fluxforge.live.hub import LiveHub  # noqa: E402
from fluxforge.live.settings import LiveConfig  # noqa: E402


FLUSH_MS = 1000  # collector.flush_interval's default


def compute(data: Path, symbols: int, seconds: float, hz: float) -> tuple[float, list[tuple[str, pa.Table]]]:
    syms = tuple(f"S{i}/USDT" for i in range(symbols))
    write_segments(data / "segments" / "ready", synthetic_market(symbols=syms, seconds=seconds, hz=hz), 2,
                   seconds=seconds)
    runner = EtlRunner(data / "segments", data / "features", data / "state", FeatureOptions())
    t0 = time.process_time()
    runner.run_once()
    cpu = time.process_time() - t0
    return cpu, _publishes(feature_parts(data / "features"))


def _publishes(parts: list[tuple[str, pa.Table]]) -> list[tuple[str, pa.Table]]:
    """As the live path publishes rows: per product and flush (FLUSH_MS of exchange time), one table
    with the rows of every symbol, a symbol's after another (etl/live_rows.py `live_products`)."""
    groups: dict[tuple[int, str], list[pa.Table]] = {}
    for product, table in parts:
        flush = table.column("timestamp").cast(pa.int64()).to_numpy() // FLUSH_MS
        for f in np.unique(flush):
            groups.setdefault((int(f), product), []).append(table.filter(pa.array(flush == f)))
    return [(product, pa.concat_tables(tables)) for (_, product), tables in sorted(groups.items())]


async def serve(chunks, json_subs: int, arrow_subs: int, stalled: int, cli_subs: int = 0) -> float:
    with tempfile.TemporaryDirectory(prefix="fflive-") as d:
        # the publishes come as fast as the loop takes them, not one per product and second: a queue
        # may hold minutes of rows, and no subscriber is dropped as slow for that
        hub = LiveHub(LiveConfig(buffer_rows=1_000_000, buffer_mb=4096), socket_path=Path(d) / "live.sock")
        await hub.start()
        commands = [[sys.executable, "-c", live.SUBSCRIBERS["json"], str(hub.socket_path)]] * json_subs + \
            [[sys.executable, "-m", "fluxforge.cli", "live", "--socket", str(hub.socket_path), "--json"]] * cli_subs
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for cmd in commands]
        readers = []
        for _ in range(arrow_subs):
            r, w = await asyncio.open_unix_connection(str(hub.socket_path), limit=1 << 26)
            w.write(b'{"format": "arrow"}\n')
            readers.append(asyncio.create_task(_drain(r)))
        while len(hub.subscribers) < json_subs + cli_subs + arrow_subs:
            await asyncio.sleep(0.05)
        healthy = list(hub.subscribers.values())  # the stalled ones are dropped after send_timeout, not waited for
        sockets = []
        for _ in range(stalled):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(hub.socket_path))
            s.sendall(b"{}\n")
            sockets.append(s)
        while len(hub.subscribers) < json_subs + cli_subs + arrow_subs + stalled:
            await asyncio.sleep(0.05)
        t0 = time.process_time()
        for i, (product, table) in enumerate(chunks):
            hub.publish(product, table)
            if i % 20 == 0:
                await asyncio.sleep(0)
        while any(s.queue for s in healthy if s.closed is None):
            await asyncio.sleep(0.01)
        cpu = time.process_time() - t0
        await hub.close()
        for p in procs:
            p.kill()
            p.wait()
        for s in sockets:
            s.close()
        for r in readers:
            r.cancel()
        return cpu


async def replay(chunks, fmt: str) -> tuple[float, int]:
    """CPU of this process for one subscriber that asks for everything the ring holds (`since` 0)
    after the publishes, until its queue is sent (an Arrow or raw JSON reader in this process,
    reading bytes only); and the rows it was sent."""
    with tempfile.TemporaryDirectory(prefix="fflive-") as d:
        hub = LiveHub(LiveConfig(buffer_rows=1_000_000, buffer_mb=4096, replay_rows=1_000_000, replay_mb=4096),
                      socket_path=Path(d) / "live.sock")
        await hub.start()
        for product, table in chunks:
            hub.publish(product, table)
        t0 = time.process_time()
        r, w = await asyncio.open_unix_connection(str(hub.socket_path), limit=1 << 26)
        w.write(json.dumps({"format": fmt, "since": 0}).encode() + b"\n")
        reader = asyncio.create_task(_drain(r))
        while not hub.subscribers:
            await asyncio.sleep(0.01)
        sub, held = next(iter(hub.subscribers.values())), hub.ring.rows  # (all of it: `since` 0, every stream)
        while sub.sent_rows < held and sub.closed is None:
            await asyncio.sleep(0.01)
        cpu = time.process_time() - t0
        await hub.close()
        reader.cancel()
        return cpu, sub.sent_rows


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(1 << 20):
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--hz", type=float, default=20.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        base, chunks = compute(Path(d), args.symbols, args.seconds, args.hz)
    rows = sum(t.num_rows for _, t in chunks)
    print(f"compute: {base:.3f} s CPU for {args.symbols} symbols x {args.seconds:g} s at {args.hz:g} Hz "
          f"-> {rows} rows in {len(chunks)} publishes (per product and {FLUSH_MS} ms flush, all symbols)")
    for label, j, a, s, c in (("0 subscribers", 0, 0, 0, 0), ("1 json", 1, 0, 0, 0), ("1 cli", 0, 0, 0, 1),
                              ("1 arrow", 0, 1, 0, 0), ("4 json", 4, 0, 0, 0), ("1 json + 1 stalled", 1, 0, 1, 0)):
        cpu = asyncio.run(serve(chunks, j, a, s, c))
        print(f"serve, {label:<20} {cpu:7.3f} s CPU  {cpu / rows * 1e6:7.1f} us/row  "
              f"ratio (compute+serve)/compute {(base + cpu) / base:.2f}")
    for fmt in ("json", "arrow"):
        cpu, sent = asyncio.run(replay(chunks, fmt))
        print(f"replay, {fmt:<19} {cpu:7.3f} s CPU  {cpu / max(sent, 1) * 1e6:7.1f} us/row  ({sent} rows replayed)")


if __name__ == "__main__":
    main()
