"""The bounded queue under a stalled writer: `drop` drops and accounts for every row,
`block` stops reading the sockets (and the stall monitor does not take that pause for a dead
connection); memory stays bounded either way and collection resumes.
Either way the stored books stay rebuildable: after dropped book rows, the next one is a
snapshot (`resync`, `after dropped rows`)."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from book_truth import BookTruth, assert_bronze_rebuilds
from collector_support import drained, make_config, missing_rows, ready_tables, rows_of, running_collector, wait_until
from test_collector_e2e import binance_entry

from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


@pytest.mark.parametrize("policy", ["drop", "block"])
def test_overflow_policy(tmp_path, policy):
    truths = []

    async def body():
        async with LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=40, trades_per_update=1.0, seed=5)) as lx:
            truths.append(BookTruth(lx, protocols=("binance",)))
            cfg = make_config(tmp_path, [binance_entry(lx, SYMBOLS)], queue_max=100, overflow_policy=policy)
            async with running_collector(cfg) as col:
                q, w, rec = col.queue, col.writer, col.recorder
                # every symbol's book synced before anything is dropped, so its first stored row is its sync point
                await wait_until(lambda: w.durable_rows > 100 and all(
                    ("binance", "orderbook", s) in rec.last_seen for s in SYMBOLS), 30, what="collecting")
                # the writer falls behind for longer than stall_timeout: under `block` the readers stop,
                # and that silence is the collector's own -- no connection may be failed as stalled
                stuck = w._io.submit(time.sleep, cfg.collector.stall_timeout + 1.0)
                peak = 0
                while not stuck.done():
                    peak = max(peak, q.pending)
                    await asyncio.sleep(0.01)
                assert q.limit >= peak >= q.capacity  # it filled up, and never beyond the bound
                before = w.durable_rows
                await wait_until(lambda: w.durable_rows > before + 200, 30, what="collecting again")
                lx.freeze()
                await drained(lx, col)  # everything sent was handled: kept or dropped
                return q.dropped_total, lx.sent

    dropped, sent = asyncio.run(asyncio.wait_for(body(), 90))
    tables = ready_tables(tmp_path)
    ev = tables["events"]
    drops = rows_of(ev, event="dropped")
    for s in SYMBOLS:  # every stored book row, before and after the drops, is the exchange's book
        assert_bronze_rebuilds(rows_of(tables["orderbook"], symbol=s), truths[0], "binance", "binance", s)
    if policy == "drop" and any(d["channel"] == "orderbook" for d in drops):
        assert any(e["reason"] == "after dropped rows" for e in rows_of(ev, event="resync"))
    assert sum(d["count"] for d in drops) == dropped
    # what the exchange sent minus what ready/ holds is exactly what the drop events say
    missing = missing_rows(tables, sent, "binance", "binance", SYMBOLS)
    by_stream = Counter()
    for d in drops:
        by_stream[(d["channel"], d["symbol"])] += d["count"]
    assert +missing == +by_stream
    if policy == "drop":
        assert dropped > 50 and all("overflow_policy=drop" in d["reason"] for d in drops)
        assert {d["channel"] for d in drops} <= {"orderbook", "trades", "ticker"}
    else:
        # reading stopped and resumed: nothing dropped, the buffered frames fit the block slack
        assert dropped == 0 and not drops
    assert not rows_of(ev, event="stall"), "a connection was failed for the collector's own pause"
    assert [e["reason"] for e in rows_of(ev, event="reconnect")] == ["collector start"]
