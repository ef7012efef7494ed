"""Live features benchmark: event-to-publish latency, and the ETL's CPU with live on vs off.

One loopback exchange simulates SYMBOLS symbols (books at 10 updates/s each, trades,
tickers).  For each setting of (collector.flush_interval, etl.reorder_window) two
collectors record the *same* stream (the loopback sends every update to every
connection) into two data dirs, each with its own `fluxforge etl` process: one with
etl.live.enabled (the baseline's stream plus the live path), one without (today's ETL).
Measured, same run:

  latency   exchange time of each hf row -> the moment the ETL handed it to its hub
            (the same window STATUS= shows), p50 / p99, against the target
            flush_interval + reorder_window + 0.5 s, and the share of rows later than it
  cpu       user+sys seconds of each ETL process from its start-up (after imports)
            to the end of the run; ratio live-on / live-off (target <= 1.3), and what live
            adds (on - off) as a share of one core of this machine, in all and per symbol
  rss       each ETL process's peak resident memory (the unit's MemoryMax is 448M)
  split     where each ETL's CPU went: the live path's steps (reading the active journals,
            feeding the engines, building the rows: a worker thread), the segment job (bronze to
            Parquet: a worker thread) and the rest (the event loop: publishing to the hub, waking)

With --subscriber, one subscriber of every product and symbol is connected to the live-on ETL the
whole run, so its CPU includes serving it (the subscriber's own process is not counted): `json`, a
client of the JSON wire (what a client without Arrow costs the ETL); `arrow`,
`fluxforge.live.subscribe(batches=True)`; `cli`, `fluxforge live --json` (the Arrow wire, the JSON
lines written by the subscriber).

Run: .venv/bin/python bench/live.py [--seconds 90] [--symbols 20] [--trades-per-update 0.5] [--segment-seconds 30]
                                    [--subscriber none|json|arrow|cli]
The machine may be shared: the figures are what this run measured, nothing more.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "integration")]

SETTINGS = [(1.0, 5.0), (0.25, 1.0)]  # (flush_interval, reorder_window): defaults, then reduced


def _etl_child(config: str, out: str) -> None:
    """`fluxforge etl`; at exit, write the live latency window and this process's CPU since start-up."""
    from fluxforge.etl import return_freed_memory_promptly
    return_freed_memory_promptly()  # as `fluxforge etl` does, before pyarrow: the same peak RSS
    from fluxforge.config import load_config
    from fluxforge.etl.live_follow import LiveFollower
    from fluxforge.etl.live_latency import latency_target
    from fluxforge.etl.runner import EtlRunner
    from fluxforge.etl.service import EtlService
    from fluxforge.logs import configure_logging

    cfg = load_config(config)
    configure_logging("WARNING", "json", "fluxforge-etl")
    service = EtlService(cfg)
    from fluxforge.bronze.journal import JournalTail
    from fluxforge.etl import chunk_log
    from fluxforge.live.hub import LiveHub
    split = _thread_cpu({"live step": (LiveFollower, "step"), "segment job": (EtlRunner, "process_claimed"),
                         # nested: parts of the live step, and of the rest
                         f"{NESTED}journal reads": (JournalTail, "read"), f"{NESTED}feed": (LiveFollower, "_feed"),
                         f"{NESTED}rows built": (LiveFollower, "_publications"),
                         f"{NESTED}chunk log": (chunk_log, "append"), f"{NESTED}hub publish": (LiveHub, "_publish")})
    t0 = time.process_time()  # imports done: what follows is the service itself
    rc = asyncio.run(service.run())
    cpu = time.process_time() - t0
    q, samples, late = None, 0, None
    if service.live is not None:
        window = service.live.latency
        target = latency_target(cfg.collector.flush_interval, cfg.etl.reorder_window)
        q, samples, late = window.quantiles(), window.count, window.share_above(target)
    import resource
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hub = service.hub
    served = {"subscribed": hub.counters["subscribed"], "dropped": sum(hub.counters["dropped"].values()),
              "sent_rows": hub.counters["sent_rows"]} if hub is not None else None
    Path(out).write_text(json.dumps({"cpu": cpu, "rss_mb": rss_mb, "latency": q, "samples": samples, "late": late,
                                     "processed": service.processed, "rc": rc, "split": split, "served": served}))


NESTED = "> "  # a phase inside another (its CPU is part of the outer one's): not summed in the rest


def _thread_cpu(phases: dict[str, tuple[type, str]]) -> dict[str, float]:
    """Wrap each (class, method) so that the CPU its calls take on their thread is added up under
    the phase's name (bench only: the wrappers stay for the life of the bench's ETL process)."""
    totals = dict.fromkeys(phases, 0.0)
    for name, (cls, method) in phases.items():
        def timed(self, *a, _fn=getattr(cls, method), _name=name, **k):
            t = time.thread_time()
            try:
                return _fn(self, *a, **k)
            finally:
                totals[_name] += time.thread_time() - t
        setattr(cls, method, timed)
    return totals


def _config(data: Path, entry: dict, flush: float, reorder: float, live: bool, segment_seconds: float) -> dict:
    from collector_support import config_dict
    cfg = config_dict(data, [entry], flush_interval=flush, segment_max_seconds=segment_seconds)
    cfg["etl"] = {"reorder_window": reorder, "live": {"enabled": live, "socket": str(data.parent / "live.sock")}}
    cfg["metrics"] = {"enabled": False}
    cfg["logging"] = {"level": "WARNING", "format": "json"}
    return cfg


SUBSCRIBERS = {"arrow": """
import asyncio, sys
from fluxforge.live import subscribe
async def main():
    async for _ in subscribe(socket=sys.argv[1], batches=True):
        pass
asyncio.run(main())
""", "json": """
import asyncio, sys
from fluxforge.live.client import frames
async def main():
    async for _ in frames(socket=sys.argv[1], format="json"):
        pass
asyncio.run(main())
"""}


async def _subscriber(kind: str, sock: Path, log) -> asyncio.subprocess.Process:
    """One subscriber of everything on the live-on ETL's socket, once it listens."""
    from collector_support import subprocess_env, wait_until
    await wait_until(sock.exists, 120, what="the live socket")
    cmd = [sys.executable, "-m", "fluxforge.cli", "live", "--socket", str(sock), "--json"] if kind == "cli" else \
        [sys.executable, "-c", SUBSCRIBERS[kind], str(sock)]
    return await asyncio.create_subprocess_exec(*cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=log)


async def _setting(tmp: Path, symbols: list[str], seconds: float, flush: float, reorder: float,
                   trades_per_update: float = 0.5, segment_seconds: float = 30.0, subscriber: str = "none") -> dict:
    import yaml
    from collector_support import collector_command, subprocess_env, wait_until
    from test_collector_e2e import binance_entry

    from fluxforge.bronze.segments import SegmentStore
    from fluxforge.loopback import LoopbackExchange, SimOptions

    sim = SimOptions(rate=10, trades_per_update=trades_per_update, ticker_interval=1.0, seed=3)
    procs, results = [], {}
    async with LoopbackExchange("sim", symbols, sim=sim) as lx:
        entry = binance_entry(lx, symbols, book_depth=20)
        for i, live in enumerate((True, False)):
            name = "on" if live else "off"
            d = tmp / f"{name}-{flush}"
            d.mkdir()
            config = d / "config.yaml"
            config.write_text(yaml.safe_dump(_config(d / "data", entry, flush, reorder, live, segment_seconds)))
            log = open(d / "log", "ab")
            col = await asyncio.create_subprocess_exec(*collector_command(config), env=subprocess_env(),
                                                       stdout=subprocess.DEVNULL, stderr=log)
            etl = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--etl-child", str(config), str(d / "out.json"),
                env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=log)
            procs.append((name, d, col, etl, log))
        subs = [await _subscriber(subscriber, procs[0][1] / "live.sock", procs[0][4])] if subscriber != "none" else []
        await asyncio.sleep(seconds)
        for name, d, col, etl, log in procs:
            col.terminate()
        for name, d, col, etl, log in procs:
            await col.wait()
        for name, d, col, etl, log in procs:  # the ETLs process the last segment, then stop
            store = SegmentStore(d / "data" / "segments")
            await wait_until(lambda: not any(store.list(s) for s in ("active", "ready", "processing")), 300,
                             what="the last segment processed")
            etl.terminate()
            await etl.wait()
            for sub in subs if name == "on" else ():
                if sub.returncode is None:
                    sub.kill()
                await sub.wait()
            log.close()
            results[name] = json.loads((d / "out.json").read_text())
    return results


def bench_symbols(n: int) -> list[str]:
    """The loopback simulator's symbols first, then made-up ones, `n` in all."""
    from fluxforge.loopback.simulator import START_PRICES
    bases = list(START_PRICES) + [f"C{i}" for i in range(n)]
    return [f"{b}/USDT" for b in bases[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--trades-per-update", type=float, default=0.5,
                    help="trades per book update (0.5: 5 trades/s per symbol; lower: a quieter market)")
    ap.add_argument("--segment-seconds", type=float, default=30.0,
                    help="collector.segment_max_seconds (the service's default is 3600: the batch ETL then "
                         "processes one segment at the end, its per-segment cost spread over the whole run)")
    ap.add_argument("--subscriber", choices=("none", "json", "arrow", "cli"), default="none",
                    help="a subscriber of every product and symbol on the live-on ETL the whole run")
    ap.add_argument("--etl-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.etl_child:
        _etl_child(*args.etl_child)
        return
    from fluxforge.etl.live_latency import latency_target
    symbols = bench_symbols(args.symbols)
    print(f"live features: {len(symbols)} symbols x books (10/s, depth 20) + trades ({10 * args.trades_per_update:g}/s)"
          f" + tickers, "
          f"{args.seconds:g} s per setting, segments of {args.segment_seconds:g} s, subscriber: {args.subscriber}; "
          f"{os.cpu_count()} CPU(s)")
    print(f"{'flush':>6} {'reorder':>8} {'p50 s':>7} {'p99 s':>7} {'target':>7} {'later':>6} {'rows':>7}"
          f" {'cpu on':>7} {'cpu off':>8} {'ratio':>6} {'rss on':>7} {'rss off':>8}")
    splits = []
    for flush, reorder in SETTINGS:
        tmp = Path(tempfile.mkdtemp(prefix="ff-bench-live-"))
        try:
            r = asyncio.run(_setting(tmp, symbols, args.seconds, flush, reorder, args.trades_per_update,
                                     args.segment_seconds, args.subscriber))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        on, off = r["on"], r["off"]
        p50, p99 = on["latency"] or (float("nan"), float("nan"))
        late = f"{100 * on['late']:.1f}%" if on.get("late") is not None else "-"
        print(f"{flush:>6g} {reorder:>8g} {p50:>7.2f} {p99:>7.2f} {latency_target(flush, reorder):>7.2f} {late:>6} {on['samples']:>7}"
              f" {on['cpu']:>7.1f} {off['cpu']:>8.1f} {on['cpu'] / max(off['cpu'], 1e-9):>6.2f}"
              f" {on['rss_mb']:>5.0f}MB {off['rss_mb']:>6.0f}MB")
        splits.append((flush, reorder, on, off))
    for flush, reorder, on, _ in splits:
        if args.subscriber != "none":
            served = on["served"] or {}
            print(f"  {flush:g}/{reorder:g}  subscriber: {served.get('subscribed', 0)} connected, "
                  f"{served.get('sent_rows', 0)} rows sent, {served.get('dropped', 0)} dropped")
    print("what live adds, as a share of one core of this machine (cpu on - cpu off over the run):")
    for flush, reorder, on, off in splits:
        added = on["cpu"] - off["cpu"]
        print(f"  {flush:g}/{reorder:g}  {added:.2f} s in {args.seconds:g} s: {100 * added / args.seconds:.1f} % of one core, "
              f"{100 * added / args.seconds / len(symbols):.2f} % per symbol")
    print("where the CPU went, s (flush/reorder):")
    for flush, reorder, on, off in splits:
        print(f"  {flush:g}/{reorder:g}  live on: {_split(on)}  |  live off: {_split(off)}")


def _split(r: dict) -> str:
    parts = {k: v for k, v in r["split"].items() if v}
    rest = r["cpu"] - sum(v for k, v in parts.items() if not k.startswith(NESTED))
    return " ".join(f"{k} {v:.2f}" for k, v in parts.items()) + f" rest {rest:.2f}"


if __name__ == "__main__":
    main()
