"""One unconvertible value never kills the writer (issue 17 item 5).

A nonce >= 2**63 used to fail the flush's Arrow conversion: that flush's rows
in every channel were lost and the collector exited.  Now a row is checked
before it is admitted and dropped alone with a `dropped` event naming why; the
other rows of the same flush, in every channel, become durable.
"""
from __future__ import annotations

import asyncio

import pyarrow.parquet as pq

from fluxforge.config import Config
from fluxforge.collector.recorder import Recorder
from fluxforge.collector.row_queue import RowQueue
from fluxforge.collector.rows import BadRow, level_values, new_buffers
from fluxforge.collector.writer import BronzeWriter

import pytest

X, S = "binance", "BTC/USDT"


def book(nonce, bids=((10.0, 1.0),)):
    return {"timestamp": 1_723_161_600_000, "nonce": nonce, "bids": [list(b) for b in bids], "asks": [[11.0, 2.0]]}


def test_bad_values_are_refused_before_anything_is_appended():
    bufs = new_buffers()
    for bad in [2**63, -(2**63) - 1, "0xzz", 1.5]:
        with pytest.raises(BadRow, match="nonce"):
            bufs["orderbook"].prepare(X, S, book(bad), 10, 1)
    with pytest.raises(BadRow, match="price"):
        bufs["trades"].prepare(X, S, {"timestamp": 1, "id": 1, "price": "n/a", "amount": 1.0, "side": "buy"}, 1)
    assert all(b.rows == 0 and not any(b.cols.values()) for b in bufs.values())
    row = bufs["orderbook"].prepare(X, S, book("12345"), 10, 1)      # coerced, not refused
    bufs["orderbook"].append(row)
    assert bufs["orderbook"].to_batch().to_pylist()[0]["nonce"] == 12345


def test_book_row_with_unconvertible_levels_is_dropped_alone_at_conversion():
    bufs = new_buffers()
    bufs["orderbook"].add(X, S, book(1), 10, 1)
    bufs["orderbook"].add(X, S, book(2, bids=((10.0, "lots"),)), 10, 2)
    bufs["orderbook"].add(X, S, book(3), 10, 3)
    rows = bufs["orderbook"].to_batch().to_pylist()
    assert [r["nonce"] for r in rows] == [1, 3] and rows[1]["bid_px"] == [10.0]
    assert len(bufs["orderbook"].bad) == 1 and "lots" in bufs["orderbook"].bad[0][2]


def test_writer_keeps_every_other_row_of_the_flush(tmp_path):
    cfg = Config.model_validate({"data_dir": str(tmp_path), "host_id": "t",
                                 "exchanges": [{"name": X, "symbols": [S]}], "collector": {"min_free_mb": 0}})

    async def main():
        queue = RowQueue(1000, "drop")
        rec = Recorder(queue, {X: 10})
        writer = BronzeWriter(cfg, queue, rec)
        await writer.start()
        rec.book(X, S, book(1), 1)
        rec.book(X, S, book(2**64 - 1), 2)                        # unconvertible nonce
        rec.book(X, S, book(3, bids=((10.0, "lots"),)), 3)        # unconvertible level
        rec.book(X, S, book(4), 4)
        rec.trade(X, S, {"timestamp": 1, "id": 9, "price": 10.5, "amount": 0.1, "side": "buy"}, 5)
        rec.trade(X, S, {"timestamp": 1, "id": 10, "price": 10.5, "amount": object(), "side": "buy"}, 6)
        rec.ticker(X, S, {"timestamp": 1, "bid": 10.0, "ask": 11.0}, 7)
        assert queue.pending == 5                                  # the refused rows were never admitted
        await writer.flush()
        assert queue.pending == 0
        await writer.close(timeout=30)
        return writer

    writer = asyncio.run(main())
    ready = sorted((tmp_path / "segments" / "ready").iterdir())
    assert len(ready) == 1
    tables = {ch: pq.read_table(ready[0] / f"{ch}.parquet") for ch in ("orderbook", "trades", "ticker", "events")}
    assert tables["orderbook"].column("nonce").to_pylist() == [1, 4]
    assert tables["trades"].column("trade_id").to_pylist() == ["9"]
    assert tables["ticker"].num_rows == 1
    dropped = [e for e in tables["events"].to_pylist() if e["event"] == "dropped"]
    reasons = sorted(e["reason"] for e in dropped)
    assert len(dropped) == 3 and all(e["count"] == 1 for e in dropped)
    assert any("nonce" in r and "int64" in r for r in reasons)
    assert any("lots" in r for r in reasons) and any("amount" in r for r in reasons)
    assert writer.durable_rows == 4


_VALUES = [1.5, 0.0, -2.25, 7, 2**60, 10**400, None, float("nan"), float("inf"), True, "1.5", "1e3", " 2 ", "lots",
           "", [1.0], {}, b"1"]


@pytest.mark.parametrize("seed", range(40))
def test_level_values_convert_as_numpy_did(seed):
    """Book levels go from Python lists to Arrow without numpy (the collector runs without it:
    collector/unused_modules.py): same values as numpy's float64 conversion, which the writer
    used before, and an error where it raised one (the row is then dropped alone)."""
    import random

    np = pytest.importorskip("numpy")
    rng = random.Random(seed)
    values = [rng.choice(_VALUES) if rng.random() < 0.3 else rng.uniform(-1e6, 1e6) for _ in range(rng.randint(0, 12))]
    try:
        want = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        with pytest.raises((TypeError, ValueError, OverflowError)):
            level_values(values)
        return
    got = level_values(values)
    assert got.null_count == 0 and np.array_equal(got.to_numpy(), want, equal_nan=True), (values, got)
