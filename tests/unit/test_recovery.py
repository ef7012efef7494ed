"""Finishing and recovery of segments: ready/ only ever holds complete, readable segments."""
from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fluxforge.bronze.active_segment import ActiveSegment
from fluxforge.bronze.schemas import CHANNEL_SCHEMAS, ORDERBOOK
from fluxforge.bronze.finish import build_segment, finish_segment, read_manifest
from fluxforge.bronze.recovery import recover_active_segments
from fluxforge.bronze.segments import REASON, SegmentStore
from tests.unit.test_journal import trades_batch


def book_batch(start: int, n: int, depth: int = 3) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({
        "exchange": ["okx"] * n,
        "symbol": ["ETH/USDT"] * n,
        "timestamp": list(range(start, start + n)),
        "recv_ns": list(range(start, start + n)),
        "kind": ["snapshot"] * n, "nonce": list(range(start, start + n)), "prev_nonce": [None] * n,
        "checksum": [None] * n,
        "bid_px": [[100.0 - k for k in range(depth)]] * n,
        "bid_sz": [[1.0] * depth] * n,
        "ask_px": [[101.0 + k for k in range(depth)]] * n,
        "ask_sz": [[2.0] * depth] * n,
    }, schema=ORDERBOOK)


@pytest.fixture
def store(tmp_path):
    return SegmentStore(tmp_path / "segments").ensure()


def test_finish_writes_parquet_and_manifest(store):
    seg = ActiveSegment.create(store, "pi01")
    seg.write("trades", trades_batch(0, 10))
    seg.write("trades", trades_batch(10, 5))
    seg.write("orderbook", book_batch(0, 4))
    seg.close()
    ready = finish_segment(seg.path, store)
    assert ready.parent == store.dir("ready") and not seg.path.exists()
    names = sorted(p.name for p in ready.iterdir())
    assert names == ["bidsasks.parquet", "events.parquet", "manifest.json", "ohlcv.parquet", "orderbook.parquet",
                     "ticker.parquet", "trades.parquet"]
    m = read_manifest(ready)
    assert m["segment"] == ready.name and m["host"] == "pi01" and m["seq"] == seg.id.seq
    assert m["recovered"] is False and m["torn_batches_dropped"] == 0
    assert m["channels"]["trades"]["rows"] == 15 and m["channels"]["orderbook"]["rows"] == 4
    assert m["channels"]["trades"]["min_ts"] == 0 and m["channels"]["trades"]["max_ts"] == 14
    assert m["channels"]["ticker"]["rows"] == 0
    for ch, schema in CHANNEL_SCHEMAS.items():
        t = pq.read_table(ready / f"{ch}.parquet")
        assert t.schema.equals(schema)
        assert t.num_rows == m["channels"][ch]["rows"]
        assert pq.ParquetFile(ready / f"{ch}.parquet").metadata.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_table(ready / "trades.parquet").column("timestamp").to_pylist() == list(range(15))


def test_recovery_drops_torn_tail_and_counts_it(store):
    seg = ActiveSegment.create(store, "pi01")
    seg.write("trades", trades_batch(0, 10))
    seg.write("trades", trades_batch(10, 10))
    seg.write("orderbook", book_batch(0, 3))
    journal = seg.journals["trades"].path
    size = seg.journals["trades"].size
    seg.close()
    os.truncate(journal, size - 9)  # the second trades batch is torn
    report = recover_active_segments(store)
    assert len(report.recovered) == 1 and report.torn_batches_dropped == 1
    m = read_manifest(report.recovered[0])
    assert m["recovered"] is True and m["torn_batches_dropped"] == 1
    assert m["channels"]["trades"]["rows"] == 10 and m["channels"]["trades"]["torn_batches_dropped"] == 1
    assert m["channels"]["orderbook"]["rows"] == 3
    assert store.list("active") == []


def test_unreadable_segment_goes_to_failed_with_reason(store):
    seg = ActiveSegment.create(store, "pi01")
    seg.write("trades", trades_batch(0, 10))
    seg.close()
    seg.journals["orderbook"].path.write_bytes(b"\x13" * 500)
    report = recover_active_segments(store)
    assert report.recovered == [] and len(report.failed) == 1
    failed = report.failed[0]
    assert failed.parent == store.dir("failed")
    assert "orderbook.arrows" in (failed / REASON).read_text()
    assert (failed / "trades.arrows").exists()  # nothing is deleted


def test_interrupted_finish_is_redone(store):
    """Crash after Parquet + manifest but before the rename: recovery just completes the move."""
    seg = ActiveSegment.create(store, "pi01")
    seg.write("trades", trades_batch(0, 10))
    seg.close()
    (seg.path / ".trades.parquet.tmp-123").write_bytes(b"partial")
    ready = finish_segment(seg.path, store)
    # simulate "manifest written, not yet moved": move back and leave a stray journal
    back = store.move(ready, "active")
    (back / "ticker.arrows").write_bytes(b"")
    report = recover_active_segments(store)
    assert len(report.recovered) == 1
    assert not (report.recovered[0] / "ticker.arrows").exists()
    assert read_manifest(report.recovered[0])["channels"]["trades"]["rows"] == 10


def test_half_created_segment_is_removed(store):
    hidden = store.dir("active") / ".seg-pi01-20260101T000000Z-000009.creating"
    hidden.mkdir()
    (hidden / "trades.arrows").write_bytes(b"x")
    report = recover_active_segments(store)
    assert report.abandoned_removed == 1 and not hidden.exists()


def test_build_segment_for_other_branches(store):
    t = pa.Table.from_batches([trades_batch(0, 100)])
    ready = build_segment(store, "demo", {"trades": t, "orderbook": pa.Table.from_batches([book_batch(0, 5)])})
    m = json.loads((ready / "manifest.json").read_text())
    assert m["channels"]["trades"]["rows"] == 100 and m["channels"]["orderbook"]["rows"] == 5
    assert pq.read_table(ready / "orderbook.parquet").column("bid_px").to_pylist()[0] == [100.0, 99.0, 98.0]
    with pytest.raises(ValueError):
        build_segment(store, "demo", {"nope": t})
