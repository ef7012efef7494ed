"""The collector process when one of its own tasks dies (issue 17 items 5 and 19), as systemd runs it:
the real `fluxforge collect` with a test NOTIFY_SOCKET.

* The writer: a journal write fails, not for a full disk.  The process must exit 1
  (systemd restarts it) after a final flush that writes every channel it still can
  and accounts for the rest, so every row the collector accepted is in bronze
  (after start-up recovery) or counted by a `dropped` event: none lost silently.
  The fault is real: the test lowers the running process's RLIMIT_FSIZE (prlimit(2))
  to the size its orderbook journal has reached, so the next orderbook append fails
  with EFBIG while the smaller journals can still grow.
* An exchange runner: one of two exchanges' runner raises (a planted bug, see
  `planted_bug.py`: nothing real can kill a runner).  The process must exit 1
  after a final flush, not run on with one exchange dead.
"""
from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
from pathlib import Path

from collector_support import (collector_command, exchange_entry, missing_rows, ready_tables, rows_of,
                               subprocess_env, wait_until, write_config)
from notify_listener import NotifyListener
from test_collector_e2e import binance_entry

from fluxforge.bronze.recovery import recover_active_segments
from fluxforge.bronze.segments import SegmentStore
from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
DATA_CHANNELS = ("orderbook", "trades", "ticker")
HEADROOM = 48 * 1024
NOT_ACCEPTED = ("queue full", "unconvertible value")  # `dropped` reasons for rows refused before admission


def log_events(path: Path, name: str) -> list[dict]:
    """The collector's JSON log lines whose event is `name`."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            if rec.get("event") == name:
                out.append(rec)
    return out


def journal_sizes(data: Path) -> dict[str, int]:
    segs = sorted((data / "segments" / "active").glob("seg-*"))
    return {p.stem: p.stat().st_size for p in segs[-1].glob("*.arrows")} if segs else {}


async def run_until_exit(cmd: list[str], listener: NotifyListener, log_path: Path, while_running) -> int:
    """Start `cmd` under the test NOTIFY_SOCKET, run `while_running(proc)`, return its exit status.

    Its log goes through a pipe (saved to `log_path` at the end), not straight into a
    file: RLIMIT_FSIZE, the writer fault below, limits every regular file it writes."""
    proc = await asyncio.create_subprocess_exec(*cmd, env=subprocess_env(NOTIFY_SOCKET=listener.path),
                                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = asyncio.ensure_future(proc.stderr.read())
    try:
        await while_running(proc)
        try:
            return await asyncio.wait_for(proc.wait(), 60)
        except asyncio.TimeoutError:
            raise AssertionError("the collector was still running 60 s after the fault: it runs on half-dead") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log_path.write_bytes(await log)


def test_writer_failure_exits_1_after_a_final_flush_and_loses_nothing_silently(tmp_path):
    listener = NotifyListener(tmp_path / "notify.sock")
    data, log_path = tmp_path / "data", tmp_path / "collector.log"

    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=40, seed=7)) as lx:
            cfg = write_config(tmp_path / "config.yaml", data, [binance_entry(lx, SYMBOLS)],
                               segment_max_seconds=600)

            async def break_the_orderbook_journal(proc):
                await wait_until(lambda: listener.has("READY=1"), 60, what="READY=1")

                def book_journal_leads() -> bool:  # the others can grow 48 KiB (seconds of data) before the limit
                    sizes = journal_sizes(data)
                    others = [v for k, v in sizes.items() if k != "orderbook"]
                    return bool(others) and sizes.get("orderbook", 0) >= max(others) + HEADROOM

                await wait_until(book_journal_leads, 90, what="an orderbook journal 48 KiB ahead of the others")
                limit = journal_sizes(data)["orderbook"]
                resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, limit))

            rc = await run_until_exit(collector_command(cfg), listener, log_path, break_the_orderbook_journal)
            lx.freeze()
            return rc, lx.sent

    try:
        rc, sent = asyncio.run(asyncio.wait_for(body(), 180))
    finally:
        listener.close()
    log = log_path.read_text(errors="replace")
    assert rc == 1, log[-3000:]
    failed = log_events(log_path, "writer_failed")
    assert failed and "File too large" in failed[0]["error"], log[-3000:]
    assert listener.has("STOPPING=1")
    accepted = log_events(log_path, "collector_stopped")[0]["accepted"]

    left_for_recovery = list((data / "segments" / "active").glob("seg-*"))
    report = recover_active_segments(SegmentStore(data / "segments"))  # what the restarted collector does first
    assert not report.failed and report.torn_batches_dropped == 0  # the failed writes rolled back: journals intact

    tables = ready_tables(data)
    missing_rows(tables, sent, "binance", "binance", SYMBOLS)  # nothing stored that was not sent, no duplicate
    stored = sum(tables[ch].num_rows for ch in DATA_CHANNELS)
    dropped = [e for e in rows_of(tables["events"], event="dropped")
               if e["channel"] in DATA_CHANNELS and not e["reason"].startswith(NOT_ACCEPTED)]
    write_failed = [e for e in dropped if e["reason"].startswith("write failed") and "Errno 27" in e["reason"]]
    assert write_failed and {e["channel"] for e in write_failed} == {"orderbook"}
    # the trades and tickers of the failing flush and of the final flush were written
    assert not [e for e in dropped if e["channel"] != "orderbook"]
    assert accepted == stored + sum(e["count"] for e in dropped), \
        f"accepted {accepted}, stored {stored}, dropped with accounting {sum(e['count'] for e in dropped)}"
    assert left_for_recovery and report.recovered  # not finished by a writer that had failed


def test_dead_exchange_runner_exits_1_after_a_final_flush(tmp_path):
    listener = NotifyListener(tmp_path / "notify.sock")
    data, log_path = tmp_path / "data", tmp_path / "collector.log"
    planted = [sys.executable, str(Path(__file__).with_name("planted_bug.py")), "binance"]

    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=20, seed=8)) as lx:
            cfg = write_config(tmp_path / "config.yaml", data,
                               [binance_entry(lx, SYMBOLS), exchange_entry(lx, "okx", SYMBOLS)],
                               segment_max_seconds=600)
            command = planted + collector_command(cfg)[3:]   # the CLI arguments after `-m fluxforge.cli`

            async def nothing(proc):
                return None

            return await run_until_exit(command, listener, log_path, nothing)

    try:
        rc = asyncio.run(asyncio.wait_for(body(), 150))
    finally:
        listener.close()
    log = log_path.read_text(errors="replace")
    assert rc == 1, log[-3000:]
    died = log_events(log_path, "exchange_runner_failed")
    assert died and died[0]["task"] == "exchange-binance" and "planted bug" in died[0]["error"], log[-3000:]
    assert listener.has("STOPPING=1")
    # the final flush ran: every accepted row is in bronze (after a stop deadline, recovery finishes the segment)
    report = recover_active_segments(SegmentStore(data / "segments"))
    assert not report.failed and report.torn_batches_dropped == 0
    tables = ready_tables(data)
    assert rows_of(tables["orderbook"], exchange="okx") and rows_of(tables["orderbook"], exchange="binance")
    stopped = log_events(log_path, "collector_stopped")[0]
    assert stopped["accepted"] == sum(tables[ch].num_rows for ch in DATA_CHANNELS)
