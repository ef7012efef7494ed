"""A segment holds a file for each channel it recorded: no empty ohlcv/bidsasks files when they are off.

The optional channels (`schemas.OPTIONAL_CHANNELS`) get a journal, and so a Parquet file and a
manifest entry, only when some exchange records them; orderbook, trades, ticker and events are
always there (DESIGN decision 1, and the ETL's live follower tails their journals from the
start).  Segments written before this, which carry empty optional files, still verify and read.
"""
from __future__ import annotations

import asyncio
import json

import pyarrow as pa
import pyarrow.parquet as pq

from fluxforge.bronze.active_segment import ActiveSegment
from fluxforge.bronze.finish import build_segment, finish_segment
from fluxforge.bronze.recovery import recover_active_segments
from fluxforge.bronze.schemas import OHLCV, OPTIONAL_CHANNELS
from fluxforge.bronze.segments import SegmentStore
from fluxforge.collector.recorder import Recorder
from fluxforge.collector.row_queue import RowQueue
from fluxforge.collector.writer import BronzeWriter
from fluxforge.config import Config
from fluxforge.etl.bronze_reader import SegmentReader
from tests.unit.test_journal import trades_batch

X, S = "binance", "BTC/USDT"
CORE = {"orderbook.parquet", "trades.parquet", "ticker.parquet", "events.parquet"}


def files_and_manifest(seg) -> tuple[set[str], set[str]]:
    files = {p.name for p in seg.iterdir()} - {"manifest.json"}
    listed = {entry["file"] for entry in json.loads((seg / "manifest.json").read_text())["channels"].values()}
    return files, listed


def collect_one_trade(tmp_path, channels: list[str]):
    """A real BronzeWriter with `channels` configured: one trade flushed, the segment finished."""
    cfg = Config.model_validate({"data_dir": str(tmp_path), "host_id": "t", "collector": {"min_free_mb": 0},
                                 "exchanges": [{"name": X, "symbols": [S], "channels": channels}]})

    async def main():
        queue = RowQueue(1000, "drop")
        rec = Recorder(queue, {X: 10})
        writer = BronzeWriter(cfg, queue, rec)
        await writer.start()
        journals = {p.name for p in writer.segment.path.iterdir()}
        rec.trade(X, S, {"timestamp": 1_723_161_600_000, "id": "1", "price": 10.0, "amount": 1.0, "side": "buy"},
                  1_723_161_600_000_000_000)
        await writer.flush()
        await writer.close(timeout=30)
        return journals

    journals = asyncio.run(main())
    [seg] = (tmp_path / "segments" / "ready").iterdir()
    return journals, seg


def test_collector_writes_no_file_for_channels_nobody_records(tmp_path):
    journals, seg = collect_one_trade(tmp_path, ["orderbook", "trades", "ticker"])
    assert journals == {name.replace(".parquet", ".arrows") for name in CORE}
    files, listed = files_and_manifest(seg)
    assert files == listed == CORE                      # the manifest lists exactly the files present
    reader = SegmentReader(seg)
    reader.verify()
    assert reader.raw_trades().num_rows == 1


def test_a_recorded_optional_channel_keeps_its_file_even_when_empty(tmp_path):
    journals, seg = collect_one_trade(tmp_path, ["trades", "ohlcv"])
    assert "ohlcv.arrows" in journals and "bidsasks.arrows" not in journals
    files, listed = files_and_manifest(seg)
    assert files == listed == CORE | {"ohlcv.parquet"}
    assert pq.read_table(seg / "ohlcv.parquet").num_rows == 0
    SegmentReader(seg).verify()


def test_segments_with_empty_optional_files_still_verify_and_read(tmp_path):
    store = SegmentStore(tmp_path / "segments").ensure()
    seg = ActiveSegment.create(store, "pi01")           # every channel: what segments used to hold
    seg.write("trades", trades_batch(0, 3))
    seg.close()
    ready = finish_segment(seg.path, store)
    files, listed = files_and_manifest(ready)
    assert files == listed == CORE | {f"{c}.parquet" for c in OPTIONAL_CHANNELS}
    reader = SegmentReader(ready)
    reader.verify()
    assert reader.raw_trades().num_rows == 3


def test_rows_of_a_channel_the_segment_lacks_open_its_journal(tmp_path):
    store = SegmentStore(tmp_path / "segments").ensure()
    seg = ActiveSegment.create(store, "pi01", channels=["orderbook", "trades", "ticker", "events"])
    candle = pa.RecordBatch.from_pylist([{"exchange": X, "symbol": S, "timestamp": 0, "recv_ns": 1, "timeframe": "1m",
                                          "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.0}],
                                        schema=OHLCV)
    seg.write("ohlcv", candle)
    seg.close()
    # a crash here: recovery finishes it from what is on disk, the new journal included
    recover_active_segments(store)
    [ready] = store.list("ready")
    files, listed = files_and_manifest(ready)
    assert files == listed == CORE | {"ohlcv.parquet"}
    assert pq.read_table(ready / "ohlcv.parquet").to_pylist()[0]["close"] == 1.5


def test_build_segment_writes_optional_channels_only_when_given(tmp_path):
    store = SegmentStore(tmp_path / "segments").ensure()
    seg = build_segment(store, "pi01", {"trades": pa.Table.from_batches([trades_batch(0, 2)])})
    files, listed = files_and_manifest(seg)
    assert files == listed == CORE


def test_each_flush_that_wrote_rows_marks_it_for_the_live_etl(tmp_path):
    """active/.flushed is touched once a flush's batches are all written (etl/live_wake.py wakes on it);
    a flush with nothing to write leaves it alone."""
    import os

    from fluxforge.bronze.segments import FLUSH_MARK

    cfg = Config.model_validate({"data_dir": str(tmp_path), "host_id": "t", "collector": {"min_free_mb": 0},
                                 "exchanges": [{"name": X, "symbols": [S]}]})
    mark = cfg.segments_dir / "active" / FLUSH_MARK
    trade = {"timestamp": 1_723_161_600_000, "id": "1", "price": 10.0, "amount": 1.0, "side": "buy"}

    async def main():
        queue = RowQueue(1000, "drop")
        rec = Recorder(queue, {X: 10})
        writer = BronzeWriter(cfg, queue, rec)
        await writer.start()
        await writer.flush()
        before = mark.exists()
        rec.trade(X, S, trade, 1_723_161_600_000_000_000)
        await writer.flush()
        first = mark.is_file()
        os.utime(mark, (0, 0))
        await writer.flush()  # nothing queued
        idle = mark.stat().st_mtime
        rec.trade(X, S, dict(trade, id="2"), 1_723_161_601_000_000_000)
        await writer.flush()
        again = mark.stat().st_mtime
        await writer.close(timeout=30)
        return before, first, idle, again

    before, first, idle, again = asyncio.run(main())
    assert not before and first
    assert idle == 0 and again > 0
    assert not mark.exists()  # a stopped collector leaves active/ empty
