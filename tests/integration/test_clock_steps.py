"""A step of the wall clock under the real collector: collection goes on, nothing is lost or reordered.

A Pi without a real-time clock steps its clock when NTP syncs; an operator runs `date -s`; a
cloud VM resumes.  Here the collector process runs under Debian's libfaketime (LD_PRELOAD, the
offset re-read from a file on every call, the monotonic clock left alone), and while the
loopback exchange streams its wall clock is stepped an hour forward, then two hours back.

What must hold, each a failure seen before it was fixed or a promise of DESIGN:
- no connection is failed as stalled: the stall monitor compared ccxt's wall-clock stamp of
  the last message with the wall clock, so the forward step failed every connection at its next
  check, and a step back would have hidden a dead one for as long as the step;
- every row the exchange sent is stored once; the receive times show both steps (the process
  really saw them);
- segments rotate by elapsed time and number on (their names' start times go back, their
  sequence numbers do not), and the ETL processes every one in sequence order, none failed,
  no row dropped as late.
"""
from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import signal
import subprocess
from pathlib import Path

from collector_support import (collector_command, drained, logged_errors, missing_rows, ready_tables,
                               subprocess_env, wait_until, write_config)
from etl_support import fluxforge_cmd
from test_collector_e2e import binance_entry

from fluxforge.bronze.segments import SegmentId, SegmentStore
from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
STALL = 3.0        # collector.stall_timeout (a loaded CI box may starve the loop for a second or two)
SEGMENT = 2.0      # collector.segment_max_seconds
HOUR_S = 3600


def libfaketime() -> str:
    """Debian's libfaketime (packaging/install-host-deps.sh installs it for the tests)."""
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    assert found, "libfaketime is not installed: run packaging/install-host-deps.sh --unit"
    return found[0]


@contextlib.asynccontextmanager
async def stepped_collector(tmp_path: Path, lx):
    """The collector as a subprocess whose wall clock is `clock(offset_s)` away from the real one;
    yields (clock, its segment store); on exit, freezes the market, drains and stops it (exit 0)."""
    data, offset, log_path = tmp_path / "data", tmp_path / "clock-offset", tmp_path / "collector.log"
    offset.write_text("+0\n")
    env = subprocess_env(LD_PRELOAD=libfaketime(), FAKETIME_TIMESTAMP_FILE=str(offset),
                         FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1")
    cfg = write_config(tmp_path / "config.yaml", data, [binance_entry(lx, SYMBOLS)],
                       flush_interval=0.25, segment_max_seconds=SEGMENT, stall_timeout=STALL)
    with open(log_path, "ab") as log:
        proc = await asyncio.create_subprocess_exec(*collector_command(cfg), env=env,
                                                    stdout=subprocess.DEVNULL, stderr=log)
        try:
            yield (lambda seconds: offset.write_text(f"{seconds:+d}\n")), SegmentStore(data / "segments")
            lx.freeze()
            await drained(lx, lambda: logged_errors(log_path))
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 60)
    assert rc == 0, log_path.read_text()[-3000:]


async def rotations(store: SegmentStore, n: int) -> None:
    have = len(store.list("ready"))
    await wait_until(lambda: len(store.list("ready")) >= have + n, 60, what=f"{n} more rotations")


def market() -> LoopbackExchange:
    return LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=20, trades_per_update=0.5, ticker_interval=0.5, seed=11))


def test_wall_clock_steps_lose_nothing_and_keep_the_order(tmp_path):
    data = tmp_path / "data"

    async def body():
        async with market() as lx:
            async with stepped_collector(tmp_path, lx) as (clock, store):
                await rotations(store, 2)
                clock(+HOUR_S)          # NTP steps the clock an hour forward
                await rotations(store, 2)   # > STALL + a check interval after the step
                clock(-HOUR_S)          # ... and then two hours back
                await rotations(store, 2)
            return lx.sent, tmp_path / "config.yaml", store

    sent, cfg, store = asyncio.run(asyncio.wait_for(body(), 240))
    tables = ready_tables(data)

    events = tables["events"].to_pylist()
    assert not [e for e in events if e["event"] in ("stall", "reconnect", "gap") and e["reason"] != "collector start"], \
        [(e["event"], e["channel"], e["reason"]) for e in events]
    assert not any(missing_rows(tables, sent, "binance", "binance", SYMBOLS).values())

    segments = store.list("ready")  # in processing order: (host, sequence number)
    ids = [SegmentId.parse(p.name) for p in segments]
    assert [i.seq for i in ids] == list(range(ids[0].seq, ids[0].seq + len(ids)))
    starts = [i.start for i in ids]
    assert starts != sorted(starts), f"no segment began before an earlier one: the clock did not step back {starts}"
    recv = tables["orderbook"].column("recv_ns").to_pylist()  # segment order, then arrival order
    steps = [b - a for a, b in zip(recv, recv[1:])]
    assert max(steps) > (HOUR_S - 60) * 10**9, "the collector's clock never stepped forward"
    assert min(steps) < -(2 * HOUR_S - 60) * 10**9, "the collector's clock never stepped back"

    etl = subprocess.run(fluxforge_cmd("etl", "--once", "--config", str(cfg)), capture_output=True, timeout=300)
    assert etl.returncode == 0, etl.stderr.decode()[-3000:]
    assert not store.list("failed")
    assert [p.name for p in store.list("done")] == [p.name for p in segments]
    done = [json.loads(line) for line in etl.stderr.decode().splitlines()
            if line.startswith("{") and '"segment_done"' in line]
    assert [d["segment"] for d in done] == [p.name for p in segments]  # sequence order, not name order
    assert all(d["late_dropped"] == 0 for d in done), done
    assert list(Path(data, "features", "hf").glob("*/*/*/*.parquet"))


def test_a_connection_that_dies_after_a_step_back_is_still_failed_as_stalled(tmp_path):
    """Two hours back: ccxt's stamp of a connection's last message is now in the future.  A
    watchdog subtracting it from the wall clock saw no silence for two hours; timed on the
    monotonic clock, the silent connections are failed after stall_timeout and reconnected."""
    async def body():
        async with market() as lx:
            async with stepped_collector(tmp_path, lx) as (clock, store):
                await rotations(store, 1)
                clock(-2 * HOUR_S)
                await rotations(store, 1)   # messages stamped after the step have arrived
                assert lx.faults.stall() >= 1   # every connection goes silent (new ones are served)
                opened = lx.sent.connections_opened
                await wait_until(lambda: lx.sent.connections_opened > opened, 30,
                                 what="the silent connections failed as stalled and opened again")
                await rotations(store, 1)
        return ready_tables(tmp_path / "data")["events"].to_pylist()

    events = asyncio.run(asyncio.wait_for(body(), 180))
    stalls = {(e["symbol"], e["channel"]) for e in events if e["event"] == "stall"}
    assert stalls == {(s, ch) for s in SYMBOLS for ch in ("orderbook", "trades", "ticker")}, events
    silences = [float(e["reason"].split()[3].rstrip("s")) for e in events if e["event"] == "stall"]
    assert min(silences) >= STALL, events  # "no data for 3.0s on ws://...": after stall_timeout, not at once
