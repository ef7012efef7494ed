"""The collector queue is bounded in bytes too, not only rows (issue 17, item 10).

Deep books make rows ~100x bigger than trades: 20,000 depth-50 book rows held ~300 MiB over
the baseline, above the collector unit's MemoryMax.  The figures at the real ceiling are in
`python bench/collector.py --only ceiling`; here the accounting itself is checked with the
real Recorder, RowQueue and column buffers."""
from __future__ import annotations

import asyncio
import sys

from fluxforge.collector.recorder import Recorder
from fluxforge.collector.row_queue import BLOCK_SLACK_BYTES, RowQueue, row_bytes


def deep_book(levels: int, nonce: int) -> dict:
    return {"timestamp": 1_700_000_000_000 + nonce, "nonce": nonce,
            "bids": [[100.0 - i * 0.01, 1.0 + i] for i in range(levels)],
            "asks": [[100.01 + i * 0.01, 1.0 + i] for i in range(levels)]}


def test_deep_books_hit_the_byte_bound_long_before_the_row_bound():
    async def main():
        per_row = row_bytes(100)
        q = RowQueue(20000, "drop", max_bytes=50 * per_row)
        rec = Recorder(q, {"binance": 50})
        for i in range(200):
            rec.book("binance", "BTC/USDT", deep_book(80, i), i)  # 80 levels sent, depth 50 stored
        assert rec.messages == 50 and q.dropped_total == 150 and q.full and q.pending == 50
        assert q.fill == 1.0
        # trades are small: after the writer is done with the books there is room again
        buffers, n = q.take()
        assert n == 50 and buffers["orderbook"].rows == 50
        q.done(n)
        assert q.pending == 0 and q.pending_bytes == 0 and not q.full
        rec.trade("binance", "BTC/USDT", {"id": 1, "price": 1.0, "amount": 1.0, "side": "buy"}, 1)
        assert rec.messages == 51
    asyncio.run(main())


def test_block_policy_pauses_readers_at_the_byte_bound_and_bounds_the_slack():
    async def main():
        q = RowQueue(20000, "block", max_bytes=10 * row_bytes(100))
        rec = Recorder(q, {"binance": 50})
        i = 0
        while not q.dropped_total:
            rec.book("binance", "BTC/USDT", deep_book(50, i), i)
            i += 1
            if i == 10:
                assert q.full and not q._space.is_set()  # the websocket readers wait from here
        # frames already read are accepted up to the slack, then dropped (counted), never unbounded
        assert q.pending == i - 1 and q.pending_bytes <= 10 * row_bytes(100) + BLOCK_SLACK_BYTES
        _buffers, n = q.take()
        q.done(n)
        assert q._space.is_set() and q.pending_bytes == 0
    asyncio.run(main())


def test_estimate_tracks_real_memory_of_a_buffered_book_row():
    """The estimate is not a guess out of thin air: it is at least the Python memory the
    buffer keeps per stored level (2 list slots + 2 float objects)."""
    slot, flt = 8, sys.getsizeof(1.5)
    assert row_bytes(100) - row_bytes(0) >= 100 * 2 * (slot + flt)
