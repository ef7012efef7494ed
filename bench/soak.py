"""Soak: the whole appliance under a steady stream for an hour or more, watched for what grows.

Why: a box left on a shelf for months fails by what grows a little every hour -- memory,
descriptors, threads, scratch files, a backlog -- which no test of a few seconds sees.
This runs what the units run, as processes, against the loopback exchange (SYMBOLS
symbols, its scheduled faults: dropped connections and sequence gaps) and moto's S3:

  collector   `fluxforge collect`, short segments (many rotations per hour)
  etl         `fluxforge etl` with live features on
  subscriber  one `fluxforge.live.subscribe(batches=True, reconnect=True)` of everything
  timers      `fluxforge compact`, then `fluxforge sync` (delete_after_upload), every
              TIMER minutes, as fluxforge-compact.timer and fluxforge-sync.timer would

Every SAMPLE seconds it records each service's resident memory, open descriptors and
threads (/proc), the files of each area of the data dir, and the rows the subscriber got.
At the end it says, for what must stay flat once warmed up (the ring fills for
etl.live.replay_minutes), whether the second half of the run went above the first half
by more than a tolerance (segments in done/ only after the hour sync keeps them for
`fluxforge status`); which services died; which timer runs failed; the error events
in the logs; and `fluxforge status`.  The exit code is 1 when anything grew or failed.

With --kill-minutes K it also SIGKILLs the collector and the ETL in turn every K minutes and
starts the killed one again at once, as Restart=always would after a power cut or the OOM
killer: then what the kills must not leave behind is judged (scratch files, segments stuck in
ready/ or processing/ or failed/, a stalled subscriber, failed timer runs), and the memory,
descriptors and threads only of what was never killed (a restarted process starts low).

What it cannot show: a day boundary (the closed-day compaction and deletion of feature
parts) unless the run crosses midnight UTC -- feature parts of the open day only grow,
and are reported, not judged.

The samples are written to samples.json in the run's directory (kept with --keep).

Run: .venv/bin/python bench/soak.py [--minutes 60] [--symbols 20] [--segment-seconds 60]
                                    [--timer-minutes 5] [--sample-seconds 15] [--kill-minutes K] [--keep DIR]
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
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "integration")]

from fluxforge.observe.stream_health import WINDOW_S  # noqa: E402

FAULTS = ["disconnect@300/900:abrupt=1", "gap@90/240"]
AREAS = ["segments/active", "segments/ready", "segments/processing", "segments/done", "segments/failed",
         "features", "state"]
# What must not grow once warmed up, with the tolerances of the second half of the run over the first:
# (relative, absolute) for its peak, and absolute for its floor -- a leak lifts the floor, transient
# opens (a rotation, a part being written) only the peaks.
FLAT = {"rss_mb": (0.10, 16.0, 16.0), "fds": (0.0, 8.0, 2.0), "threads": (0.0, 4.0, 1.0)}
FLAT_FILES = {"segments/active": 12, "segments/ready": 12, "segments/processing": 12, "segments/failed": 0, "state": 8}
FILE_FLOOR = 2
DONE = "segments/done"  # delete_after_upload keeps the last hour for `fluxforge status`: flat only after it

SUBSCRIBER = """
import asyncio, json, sys, time
from fluxforge.live import subscribe
async def main():
    rows = replays = 0
    last = time.monotonic()
    async for b in subscribe(socket=sys.argv[1], batches=True, reconnect=True):
        rows += b.batch.num_rows
        replays += b.batch.num_rows if b.replay else 0
        if time.monotonic() - last > 2:
            last = time.monotonic()
            open(sys.argv[2] + ".tmp", "w").write(json.dumps({"rows": rows, "replays": replays}))
            __import__("os").replace(sys.argv[2] + ".tmp", sys.argv[2])
asyncio.run(main())
"""


def _config(data: Path, entry: dict, s3_url: str, segment_seconds: float, sock: Path) -> dict:
    from collector_support import FAST_COLLECTOR, config_dict

    from fluxforge.config import CollectorConfig
    # the service's own stall timeout, backoffs and snapshot spacing, not the tests' fast ones (a 2 s stall
    # timeout reconnected hundreds of times on a busy machine)
    defaults = {k: CollectorConfig.model_fields[k].default for k in FAST_COLLECTOR}
    cfg = config_dict(data, [entry], **{**defaults, "flush_interval": 1.0, "segment_max_seconds": segment_seconds})
    cfg["etl"] = {"live": {"enabled": True, "socket": str(sock)}}
    cfg["sync"] = {"enabled": True, "bucket": "soak", "endpoint_url": s3_url, "region": "us-east-1",
                   "addressing_style": "path", "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                   "require_time_sync": False, "delete_after_upload": True}
    cfg["metrics"] = {"enabled": False}
    cfg["logging"] = {"level": "WARNING", "format": "json"}
    return cfg


def _proc_sample(pid: int) -> dict | None:
    """Resident MB (and its anonymous and file-backed parts: a heap that grows is anonymous, pages of
    files mapped or read back are file-backed), open descriptors and threads of a running process
    (None: gone)."""
    from _consumer_runs import rss_mb
    try:
        return {"rss_mb": rss_mb(pid), "anon_mb": rss_mb(pid, "RssAnon"), "file_mb": rss_mb(pid, "RssFile"),
                "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": len(os.listdir(f"/proc/{pid}/task"))}
    except (FileNotFoundError, ProcessLookupError):
        return None


def _files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root)) if root.exists() else 0


def _grown(values: list[float], rel: float, peak: float, floor: float) -> tuple[bool, str]:
    """Whether the second half of `values` went above the first: its max by more than rel and peak,
    or its min by more than floor; and the figures, as a line."""
    half = len(values) // 2
    a, b = values[:half], values[half:]
    grew = max(b) > max(a) * (1 + rel) + peak or min(b) > min(a) + floor
    return grew, f"max {max(a):8.1f} -> {max(b):8.1f}, min {min(a):8.1f} -> {min(b):8.1f} (first half -> second)"


class Soak:
    def __init__(self, tmp: Path, args):
        self.tmp, self.args = tmp, args
        self.data = tmp / "data"
        self.config = tmp / "config.yaml"
        self.sock = tmp / "live.sock"
        self.counts = tmp / "subscriber.json"
        self.samples: list[dict] = []
        self.timer_runs: list[tuple[str, int, float]] = []
        self.kills: list[tuple[float, str]] = []  # (seconds into the run, service)
        self.commands: dict[str, tuple[str, ...]] = {}
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def _start(self, name: str, *cmd: str) -> None:
        from collector_support import subprocess_env
        self.commands[name] = cmd
        log = open(self.tmp / f"{name}.log", "ab")
        self.procs[name] = await asyncio.create_subprocess_exec(*cmd, env=subprocess_env(), stdout=subprocess.DEVNULL,
                                                                stderr=log)
        log.close()

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "fluxforge.cli", *args, "--config", str(self.config)]

    async def run(self) -> dict:
        import yaml
        from collector_support import wait_until
        from s3harness import MotoServer
        from test_collector_e2e import binance_entry

        from fluxforge.loopback import LoopbackExchange, SimOptions
        from live import bench_symbols

        symbols = bench_symbols(self.args.symbols)
        with MotoServer() as moto:
            moto.client().create_bucket(Bucket="soak")
            sim = SimOptions(rate=10, trades_per_update=0.5, ticker_interval=1.0, seed=7)
            async with LoopbackExchange("sim", symbols, sim=sim, faults=FAULTS) as lx:
                cfg = _config(self.data, binance_entry(lx, symbols, book_depth=20), moto.url,
                              self.args.segment_seconds, self.sock)
                self.config.write_text(yaml.safe_dump(cfg))
                await self._start("collector", *self._cli("collect"))
                await self._start("etl", *self._cli("etl"))
                await wait_until(self.sock.exists, 120, what="the live socket")
                await self._start("subscriber", sys.executable, "-c", SUBSCRIBER, str(self.sock), str(self.counts))
                try:
                    await self._watch()
                finally:
                    status = await self._status()
                    codes = await self._stop()
        return {"status": status, "exit_codes": codes}

    async def _watch(self) -> None:
        start = time.monotonic()
        end = start + self.args.minutes * 60
        next_timer = start + self.args.timer_minutes * 60
        kill_every = (self.args.kill_minutes or 0) * 60
        next_kill = start + kill_every if kill_every else float("inf")
        next_print = start
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_timer:
                for job in ("compact", "sync"):
                    t = time.monotonic()
                    with open(self.tmp / f"{job}.log", "ab") as log:
                        p = await asyncio.create_subprocess_exec(*self._cli(job), stdout=subprocess.DEVNULL, stderr=log)
                        self.timer_runs.append((job, await p.wait(), time.monotonic() - t))
                next_timer += self.args.timer_minutes * 60
            if now >= next_kill:
                await self._kill_and_restart(("collector", "etl")[len(self.kills) % 2], now - start)
                next_kill += kill_every
            sample = self._sample(time.monotonic() - start)
            self.samples.append(sample)
            if now >= next_print:
                next_print += 300
                print(_progress(sample), flush=True)
            await asyncio.sleep(max(0.0, self.args.sample_seconds - (time.monotonic() - now)))

    async def _kill_and_restart(self, name: str, t: float) -> None:
        """SIGKILL `name` (no shutdown of any kind) and start it again at once, as systemd's
        Restart=always would; if it had already died, leave it dead (the report says so)."""
        p = self.procs[name]
        if p.returncode is not None:
            return
        p.kill()
        await p.wait()
        self.kills.append((t, name))
        await self._start(name, *self.commands[name])

    def _sample(self, t: float) -> dict:
        out = {"t": t, "files": {a: _files(self.data / a) for a in AREAS}}
        for name, p in self.procs.items():
            out[name] = _proc_sample(p.pid) if p.returncode is None else None
        try:
            out["subscriber_rows"] = json.loads(self.counts.read_text())["rows"]
        except (FileNotFoundError, ValueError):
            out["subscriber_rows"] = 0
        return out

    async def _status(self) -> tuple[int, str]:
        p = await asyncio.create_subprocess_exec(*self._cli("status"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await p.communicate()
        return p.returncode, out.decode(errors="replace")

    async def _stop(self) -> dict[str, int | None]:
        """SIGTERM each service as systemd would (the subscriber first); their exit codes."""
        codes = {}
        for name in ("subscriber", "collector", "etl"):
            p = self.procs[name]
            died = p.returncode
            if died is None:
                p.terminate()
                try:
                    await asyncio.wait_for(p.wait(), 120)
                except asyncio.TimeoutError:
                    p.kill()
                    await p.wait()
            codes[name] = died  # None: it was running until told to stop
        return codes


def _progress(s: dict) -> str:
    procs = " ".join(f"{n} {s[n]['rss_mb']:.0f}MB({s[n]['anon_mb']:.0f} anon)/{s[n]['fds']}fd/{s[n]['threads']}thr"
                     if s[n] else f"{n} GONE"
                     for n in ("collector", "etl", "subscriber"))
    files = " ".join(f"{a.split('/')[-1]} {n}" for a, n in s["files"].items())
    return f"{s['t'] / 60:6.1f} min  {procs}  files: {files}  subscriber rows {s['subscriber_rows']}"


def _log_events(tmp: Path) -> Counter:
    """(file, level, event) of every warning and error the services and timers logged."""
    seen = Counter()
    for log in sorted(tmp.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                seen[(log.stem, "text", line[:80])] += 1
                continue
            if isinstance(rec, dict) and rec.get("level") in ("warning", "error", "critical"):
                seen[(log.stem, rec["level"], rec.get("event", "?"))] += 1
    return seen


def report(soak: Soak, result: dict, warmup_minutes: float) -> int:
    """Print the verdicts; the number of failures."""
    failures = 0
    judged = [s for s in soak.samples if s["t"] >= warmup_minutes * 60]
    print(f"\njudged: {len(judged)} samples after {warmup_minutes:g} min of warm-up, of {len(soak.samples)}")
    if len(judged) < 8:
        print("FAIL  too few samples after the warm-up to judge (run longer)")
        return 1
    killed = Counter(name for _, name in soak.kills)
    if killed:
        print(f"info  SIGKILLed and restarted: {', '.join(f'{n} {k} times' for n, k in killed.items())}")
    for name in ("collector", "etl", "subscriber"):
        if any(s[name] is None for s in soak.samples):
            failures += 1
            print(f"FAIL  {name} died (exit code {result['exit_codes'][name]})")
            continue
        if killed[name]:
            print(f"info  {name:<10} memory, descriptors and threads not judged: restarted after its kills")
            continue
        for series, (rel, peak, floor) in FLAT.items():
            grew, figures = _grown([s[name][series] for s in judged], rel, peak, floor)
            failures += grew
            print(f"{'FAIL' if grew else 'ok  '}  {name:<10} {series:<8} {figures}")
        for part in ("anon_mb", "file_mb"):  # where the resident memory is, not judged
            print(f"info  {name:<10} {part:<8} {_grown([s[name].get(part, 0.0) for s in judged], 0, 0, 0)[1]}")
    for area, peak in FLAT_FILES.items():
        values = [s["files"][area] for s in judged]
        grew, figures = _grown(values, 0.0, peak, FILE_FLOOR)
        grew = grew or (area == "segments/failed" and max(values) > 0)
        failures += grew
        print(f"{'FAIL' if grew else 'ok  '}  files in {area:<20} {figures}")
    settle = WINDOW_S + 2 * soak.args.timer_minutes * 60  # an hour of segments kept, then a sync run that deletes
    done = [s["files"][DONE] for s in judged if s["t"] >= settle]
    per_timer = 5 * soak.args.timer_minutes * 60 / soak.args.segment_seconds  # files of the segments of a timer period
    if len(done) >= 8:
        grew, figures = _grown(done, 0.0, per_timer + 5, per_timer + 5)
        failures += grew
        print(f"{'FAIL' if grew else 'ok  '}  files in {DONE:<20} {figures}, after {settle / 60:g} min")
    else:
        print(f"info  files in {DONE}: {soak.samples[-1]['files'][DONE]} at the end, not judged: sync keeps the last "
              f"hour (for status), so it is flat only after {settle / 60:g} min")
    print(f"info  files in features: {soak.samples[0]['files']['features']} -> {soak.samples[-1]['files']['features']}"
          " (parts of the open day: merged and deleted only once it is closed)")
    rows = [s["subscriber_rows"] for s in judged]
    window = max(1, int(120 / soak.args.sample_seconds))
    stalled = [soak.samples.index(judged[i]) for i in range(window, len(rows)) if rows[i] == rows[i - window]]
    failures += bool(stalled)
    print(f"{'FAIL' if stalled else 'ok  '}  subscriber rows {rows[0]} -> {rows[-1]}"
          + (f", none new for 2 min at {len(stalled)} samples" if stalled else ", new rows every 2 min"))
    bad = [(job, rc) for job, rc, _ in soak.timer_runs if rc != 0]
    failures += len(bad)
    took = {job: max(s for j, _, s in soak.timer_runs if j == job) for job, _, _ in soak.timer_runs}
    print(f"{'FAIL' if bad else 'ok  '}  timer runs: {len(soak.timer_runs)}, failed {bad or 'none'}, "
          f"longest {', '.join(f'{j} {s:.1f} s' for j, s in took.items())}")
    for name, code in result["exit_codes"].items():
        if code is not None:
            print(f"FAIL  {name} had exited ({code}) before the end")
    rc, text = result["status"]
    print(f"info  fluxforge status: exit {rc}\n" + "\n".join("      " + line for line in text.splitlines()[:25]))
    events = _log_events(soak.tmp)
    print("info  warnings and errors logged (file, level, event: count):")
    for (log, level, event), n in sorted(events.items()):
        print(f"      {log:<10} {level:<8} {event:<40} {n}")
    print(f"\n{'FAILED' if failures else 'PASSED'}: {failures} failure(s)")
    return failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--segment-seconds", type=float, default=60.0)
    ap.add_argument("--timer-minutes", type=float, default=5.0)
    ap.add_argument("--sample-seconds", type=float, default=15.0)
    ap.add_argument("--warmup-minutes", type=float, default=None,
                    help="not judged before (default: etl.live.replay_minutes + 2, the ring then full)")
    ap.add_argument("--kill-minutes", type=float, default=None,
                    help="SIGKILL the collector and the ETL in turn this often, each restarted at once")
    ap.add_argument("--keep", type=Path, help="run in this (empty) directory and keep it")
    args = ap.parse_args()
    from fluxforge.live.settings import LiveConfig
    warmup = args.warmup_minutes if args.warmup_minutes is not None else LiveConfig().replay_minutes + 2
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="ff-soak-"))
    tmp.mkdir(parents=True, exist_ok=True)
    kills = f"kills every {args.kill_minutes:g} min" if args.kill_minutes else "no kills"
    print(f"soak: {args.symbols} symbols, {args.minutes:g} min, segments of {args.segment_seconds:g} s, timers every "
          f"{args.timer_minutes:g} min, {kills}, faults {', '.join(FAULTS)}; warm-up {warmup:g} min; in {tmp}", flush=True)
    soak = Soak(tmp, args)
    try:
        result = asyncio.run(soak.run())
        (tmp / "samples.json").write_text(json.dumps({"samples": soak.samples, "timer_runs": soak.timer_runs,
                                                      "kills": soak.kills}))
        failures = report(soak, result, warmup)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
