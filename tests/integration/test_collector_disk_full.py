"""Disk full: the collector keeps running, reports it (STATUS, log, event), drops data with
accounting instead of crash-looping, and resumes by itself when space returns.

Uses a 3 MB tmpfs (root only, as in CI) so the disk really fills: writes fail with ENOSPC.
"""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from book_truth import BookTruth, assert_bronze_rebuilds
from collector_support import drained, make_config, missing_rows, ready_tables, rows_of, running_collector, wait_until
from test_collector_e2e import binance_entry

from fluxforge.collector.health import status_line
from fluxforge.loopback import LoopbackExchange, SimOptions
from fluxforge.bronze.segments import SegmentStore

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


@pytest.fixture
def small_disk(mount_tmpfs):
    return mount_tmpfs("3m")


def reserve(path, size=1_500_000):
    """Half the disk held by the test from the start: however much the collector writes before
    `fill` (a slow, loaded run), deleting the filler gives it room again."""
    filler = path / "filler.bin"
    filler.write_bytes(b"\0" * size)
    return filler


def fill(path):
    """Write until ENOSPC (appending to the reserved filler); returns the filler file."""
    filler = path / "filler.bin"
    # unbuffered: a buffered file would keep the bytes that did not fit and raise ENOSPC again
    # when `with` closes it
    with open(filler, "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_disk_full_drops_with_accounting_and_resumes(small_disk):
    reserve(small_disk)

    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=30, trades_per_update=1.0, seed=9)) as lx:
            truth = BookTruth(lx, protocols=("binance",))
            cfg = make_config(small_disk / "data", [binance_entry(lx, SYMBOLS, book_depth=20)],
                              min_free_mb=0, segment_max_seconds=1.0)
            async with running_collector(cfg) as col:
                w = col.writer
                await wait_until(lambda: w.durable_rows > 100 and w.rotations >= 1, 30, what="some durable rows")
                filler = await asyncio.get_running_loop().run_in_executor(None, fill, small_disk)
                await wait_until(lambda: w.disk_full, 20, what="disk_full detected")
                assert "DISK FULL" in status_line(col, 0.0)
                await wait_until(lambda: w.disk_dropped_total > 50, 20, what="rows dropped while full")
                rows_before = col.recorder.messages
                await asyncio.sleep(1.0)
                assert col.recorder.messages > rows_before  # still collecting, not crash-looping
                filler.unlink()
                await wait_until(lambda: not w.disk_full, 20, what="resume after space returns")
                resumed_at = w.durable_rows
                await wait_until(lambda: w.durable_rows > resumed_at + 100 and w.rotations >= 3, 30,
                                 what="writing and rotating again")
                lx.freeze()
                await drained(lx, col)  # everything sent was handled: stored or dropped
                dropped = w.disk_dropped_total
        return dropped, lx.sent, truth

    dropped, sent, truth = asyncio.run(asyncio.wait_for(body(), 120))
    data = small_disk / "data"
    store = SegmentStore(data / "segments")
    assert store.list("failed") == [] and store.list("active") == []
    tables = ready_tables(data)  # every ready file reads cleanly
    ev = tables["events"]
    assert rows_of(ev, event="disk_full", exchange="binance")
    drops = rows_of(ev, event="dropped", exchange="binance")
    assert drops and all(d["reason"] == "disk full" for d in drops)
    assert sum(d["count"] for d in drops) == dropped
    # every row the exchange sent is in ready/ or counted in a `dropped` event (per channel)
    missing = Counter()
    for (channel, _symbol), n in missing_rows(tables, sent, "binance", "binance", SYMBOLS).items():
        missing[channel] += n
    by_channel = Counter()
    for d in drops:
        by_channel[d["channel"]] += d["count"]
    assert +missing == +by_channel
    assert rows_of(ev, event="gap", exchange="binance")
    resumed_at = max(d["recv_ns"] for d in drops)  # `dropped` rows are written when space returns
    assert rows_of(ev, event="disk_full")[0]["recv_ns"] < resumed_at
    assert len([r for r in tables["orderbook"].to_pylist() if r["recv_ns"] > resumed_at]) > 20  # resumed
    for symbol in SYMBOLS:  # book rows lost to the full disk: the next one is a snapshot, bronze still rebuilds
        rows = rows_of(tables["orderbook"], symbol=symbol)
        assert any(r["kind"] == "snapshot" and r["recv_ns"] > rows_of(ev, event="disk_full")[0]["recv_ns"]
                   for r in rows)
        assert_bronze_rebuilds(rows, truth, "binance", "binance", symbol)
