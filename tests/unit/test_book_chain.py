"""A book delta in bronze always continues the row before it (collector/book_chain.py).

The race this guards against (seen in CI, test_collector_disk_full): a flush's
book rows fail to reach disk while the websocket readers are already queueing
the next deltas of the same book.  Those deltas must not reach bronze before the
book's next snapshot row; they are dropped and counted with the same reason.
The test drives that exact interleaving deterministically: the failing write
blocks in the writer thread until the loop has queued the later deltas.
"""
from __future__ import annotations

import asyncio
import errno
import threading

import pyarrow.parquet as pq

from fluxforge.bronze.schemas import BOOK_DELTA, BOOK_SNAPSHOT
from fluxforge.collector.book_chain import BookChainGuard
from fluxforge.collector.recorder import Recorder
from fluxforge.collector.row_queue import RowQueue
from fluxforge.collector.rows import BookBuffer
from fluxforge.collector.writer import BronzeWriter
from fluxforge.config import Config

X, S, S2 = "binance", "BTC/USDT", "ETH/USDT"


def live_book(nonce):
    return {"timestamp": 1_723_161_600_000 + nonce, "nonce": nonce, "bids": [[10.0, 1.0]], "asks": [[11.0, 2.0]]}


def add(buf, symbol, kind, nonce, bid=10.0):
    head = (X, symbol, 1, nonce, kind, nonce, nonce - 1, None)
    buf.append((head, [bid, 1.0], [11.0, 1.0], True))


def kinds_and_nonces(buf):
    return list(zip(buf.cols["symbol"], buf.cols["kind"], buf.cols["nonce"]))


def test_guard_drops_deltas_of_a_broken_book_until_its_snapshot():
    guard = BookChainGuard()
    buf = BookBuffer()
    add(buf, S, BOOK_DELTA, 5)
    untouched, dropped = guard.filter(buf)
    assert untouched is buf and not dropped          # nothing broken: the buffer itself
    guard.lost([(X, S)], "disk full")
    buf = BookBuffer()
    add(buf, S, BOOK_DELTA, 6)
    add(buf, S2, BOOK_DELTA, 6)                      # another book: untouched
    add(buf, S, BOOK_DELTA, 7)
    add(buf, S, BOOK_SNAPSHOT, 8)
    add(buf, S, BOOK_DELTA, 9)
    kept, dropped = guard.filter(buf)
    assert kinds_and_nonces(kept) == [(S2, BOOK_DELTA, 6), (S, BOOK_SNAPSHOT, 8), (S, BOOK_DELTA, 9)]
    assert dropped == {(X, S, "disk full"): 2}
    assert not guard.broken
    assert kept.to_batch().column("bid_px").to_pylist() == [[10.0], [10.0], [10.0]]


def test_a_book_stays_broken_across_buffers_without_a_snapshot():
    guard = BookChainGuard()
    guard.lost([(X, S)], "disk full")
    for nonce in (1, 2):
        buf = BookBuffer()
        add(buf, S, BOOK_DELTA, nonce)
        kept, dropped = guard.filter(buf)
        assert kept.rows == 0 and dropped == {(X, S, "disk full"): 1}
    assert (X, S) in guard.broken


def test_unconvertible_level_drops_the_rest_of_its_chain_in_the_batch():
    buf = BookBuffer()
    add(buf, S, BOOK_SNAPSHOT, 1)
    add(buf, S, BOOK_DELTA, 2, bid="lots")
    add(buf, S, BOOK_DELTA, 3)                       # continues the dropped row: dropped too
    add(buf, S2, BOOK_DELTA, 3)
    add(buf, S, BOOK_SNAPSHOT, 4)
    add(buf, S, BOOK_DELTA, 5)
    add(buf, S2, BOOK_DELTA, 6, bid="lots")          # S2's chain is still broken at the end
    rows = buf.to_batch().to_pylist()
    assert [(r["symbol"], r["nonce"]) for r in rows] == [(S, 1), (S2, 3), (S, 4), (S, 5)]
    assert [b[2].split(":")[0] for b in buf.bad] == [
        "unconvertible book level", "follows an unconvertible book row", "unconvertible book level"]
    assert buf.broken_after == {(X, S2)}


def test_deltas_queued_while_a_write_fails_never_reach_bronze(tmp_path):
    cfg = Config.model_validate({"data_dir": str(tmp_path), "host_id": "t",
                                 "exchanges": [{"name": X, "symbols": [S]}], "collector": {"min_free_mb": 0}})
    writing, proceed = threading.Event(), threading.Event()

    def delta(rec, nonce):
        rec.book_delta(X, S, live_book(nonce), nonce, nonce - 1, None, [10.0, float(nonce)], [])

    async def main():
        queue = RowQueue(1000, "drop")
        rec = Recorder(queue, {X: 10})
        writer = BronzeWriter(cfg, queue, rec)
        await writer.start()
        rec.book_snapshot(X, S, live_book(1), 1, None, None)
        delta(rec, 2)
        await writer.flush()                          # durable: snapshot 1, delta 2
        delta(rec, 3)
        segment_write = writer.segment.write

        def failing_write(channel, batch, sync):
            if channel == "orderbook":
                writing.set()
                assert proceed.wait(30)
                raise OSError(errno.ENOSPC, "No space left on device")
            return segment_write(channel, batch, sync=sync)

        writer.segment.write = failing_write
        flushing = asyncio.ensure_future(writer.flush())      # takes delta 3, the write blocks
        assert await asyncio.get_running_loop().run_in_executor(None, writing.wait, 30)
        delta(rec, 4)                                 # queued meanwhile: they continue delta 3
        delta(rec, 5)
        proceed.set()
        await flushing                                # delta 3 lost: disk full
        assert writer.disk_full
        writer.segment.write = segment_write
        await writer.flush()                          # deltas 4 and 5 dropped, not written
        delta(rec, 6)                                 # the book restarts from a snapshot
        delta(rec, 7)
        await writer.close(timeout=30)
        return writer

    writer = asyncio.run(main())
    ready = sorted((tmp_path / "segments" / "ready").iterdir())
    book = pq.read_table(ready[0] / "orderbook.parquet").to_pylist()
    assert [(r["kind"], r["nonce"]) for r in book] == [
        (BOOK_SNAPSHOT, 1), (BOOK_DELTA, 2), (BOOK_SNAPSHOT, 6), (BOOK_DELTA, 7)]
    events = pq.read_table(ready[0] / "events.parquet").to_pylist()
    drops = [(e["symbol"], e["count"]) for e in events if e["event"] == "dropped" and e["reason"] == "disk full"]
    assert sorted(drops, key=str) == sorted([(None, 1), (S, 2)], key=str)
    assert writer.disk_dropped_total == 3 and writer.durable_rows == 4
