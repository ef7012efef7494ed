"""Unit tests of the collector's small parts: backoff, snapshot gate, row queue, column buffers."""
from __future__ import annotations

import asyncio
import random
import time

import pyarrow as pa

from fluxforge.bronze.schemas import CHANNEL_SCHEMAS
from fluxforge.collector.backoff import Backoff
from fluxforge.collector.row_queue import RowQueue
from fluxforge.collector.rows import new_buffers
from fluxforge.collector.snapshot_gate import SnapshotGate


def test_backoff_is_capped_exponential_with_jitter_and_resets():
    b = Backoff(1.0, 8.0, random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    for i, d in enumerate(delays):
        base = min(8.0, 2 ** i)
        assert base * 0.5 <= d <= base
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next_delay() <= 1.0


def test_snapshot_gate_limits_concurrency_and_spaces_starts():
    gate = SnapshotGate(max_concurrent=2, spacing=0.05)

    async def fetch():
        async with gate.slot():
            await asyncio.sleep(0.1)

    async def main():
        await asyncio.gather(*(fetch() for _ in range(6)))

    t0 = time.monotonic()
    asyncio.run(main())
    assert gate.max_in_flight == 2 and gate.started == 6
    starts = gate.start_times
    assert all(b - a >= 0.049 for a, b in zip(starts, starts[1:]))
    assert time.monotonic() - t0 >= 0.25


def test_row_queue_drop_policy_counts_and_reports():
    async def main():
        q = RowQueue(10, "drop")
        admitted = [q.admit("binance", "trades", "BTC/USDT") for _ in range(15)]
        assert admitted.count(True) == 10 and q.dropped_total == 5 and q.full
        buffers, n = q.take()
        assert n == 0  # nothing was added to the buffers in this test, only admitted
        ev = buffers["events"].to_batch().to_pylist()
        assert ev == [dict(exchange="binance", symbol="BTC/USDT", channel="trades", timestamp=ev[0]["timestamp"],
                           recv_ns=ev[0]["recv_ns"], event="dropped", reason="queue full (overflow_policy=drop)",
                           count=5)]
    asyncio.run(main())


def test_row_queue_pending_until_durable_and_oldest_age():
    async def main():
        q = RowQueue(100, "block")
        buffers = q.buffers
        for i in range(3):
            assert q.admit("okx", "trades", "ETH/USDT")
            buffers["trades"].add("okx", "ETH/USDT", {"id": i, "price": 1.0, "amount": 2.0, "side": "buy"}, i)
        time.sleep(0.05)
        taken, n = q.take()
        assert n == 3 and q.pending == 3 and q.oldest_age() >= 0.05
        q.done(n)
        assert q.pending == 0 and q.oldest_age() == 0.0
    asyncio.run(main())


def test_buffers_produce_bronze_batches():
    bufs = new_buffers()
    book = {"timestamp": 5, "nonce": 42, "bids": [[10.0, 1.0], [9.0, 2.0], [8.0, 3.0]], "asks": [[11.0, 1.5]]}
    bufs["orderbook"].add("binance", "BTC/USDT", book, 2, 123)
    bufs["orderbook"].add("binance", "BTC/USDT", {"timestamp": None, "nonce": None, "bids": [], "asks": []}, 2, 124)
    bufs["ticker"].add("binance", "BTC/USDT", {"timestamp": 7, "bid": 1, "ask": "2", "bidVolume": None}, 125)
    bufs["events"].add("binance", None, None, "reconnect", "why", None, 126)
    for ch, buf in bufs.items():
        batch = buf.to_batch()
        assert batch.schema.equals(CHANNEL_SCHEMAS[ch])
    rows = bufs["orderbook"].to_batch().to_pylist()
    assert rows[0]["bid_px"] == [10.0, 9.0] and rows[0]["bid_sz"] == [1.0, 2.0] and rows[0]["ask_px"] == [11.0]
    assert rows[0]["nonce"] == 42 and rows[1]["bid_px"] == [] and rows[1]["timestamp"] is None
    t = bufs["ticker"].to_batch().to_pylist()[0]
    assert t["bid"] == 1.0 and t["ask"] == 2.0 and t["bid_size"] is None
    assert isinstance(bufs["trades"].to_batch(), pa.RecordBatch)


def test_book_rows_keep_snapshots_whole_and_deltas_as_applied():
    from fluxforge.collector.book_tap import RecordingOrderBook, message_links

    resets = []
    book = RecordingOrderBook({}, 2, on_reset=lambda b, snap: resets.append(b.get("nonce")))
    assert book.fresh and book.take_logs() == ([], [])
    book.reset({"bids": [[10.0, 1.0], [9.0, 2.0], [8.0, 3.0]], "asks": [[11.0, 1.5]], "nonce": 7, "symbol": "X/Y"})
    assert resets == [7] and not book.fresh and book.take_logs() == ([], [])  # a reset is a snapshot, not a delta
    book["bids"].store(9.0, 0.0)          # ccxt's handle_delta path
    book["bids"].storeArray([12.0, 4.0])  # and the storeArray path
    book["asks"].store(11.0, 2.5)
    book.limit()                          # ccxt's trimming does not touch what was logged
    assert book.take_logs() == ([9.0, 0.0, 12.0, 4.0], [11.0, 2.5]) and len(book["bids"]) == 2
    bufs = new_buffers()
    bufs["orderbook"].add_snapshot("okx", "X/Y", 5, 1, 7, None, -3, [[10.0, 1.0], [9.0, 2.0]], [[11.0, 1.5]])
    bufs["orderbook"].add_delta("okx", "X/Y", 6, 2, 8, 7, 99, [9.0, 0.0, 12.0, 4.0], [])
    rows = bufs["orderbook"].to_batch().to_pylist()
    assert [r["kind"] for r in rows] == ["snapshot", "delta"]
    assert rows[0]["bid_px"] == [10.0, 9.0] and rows[0]["checksum"] == -3 and rows[0]["prev_nonce"] is None
    assert rows[1]["bid_px"] == [9.0, 12.0] and rows[1]["bid_sz"] == [0.0, 4.0] and rows[1]["ask_px"] == []
    assert (rows[1]["nonce"], rows[1]["prev_nonce"], rows[1]["checksum"]) == (8, 7, 99)
    assert message_links({"U": 101, "u": 104}) == (100, None)
    assert message_links({"prevSeqId": -1, "seqId": 5, "checksum": "-12"}) == (None, -12)
    assert message_links({"prevSeqId": 4, "seqId": 5, "checksum": 3}) == (4, 3)
    assert message_links({"pu": 9, "U": 5}) == (9, None) and message_links([1]) == (None, None)
