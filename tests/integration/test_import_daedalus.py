"""`fluxforge import daedalus` on data shaped by Daedalus's own writer code paths.

The test-side writer (tests/daedalus_writer.py) writes the same ccxt records as NDJSON
segments, flat Parquet and a partitioned Parquet tree; each is imported with the real
command and every bronze row is compared with the row the record must become (written
from the records, not by the importer).  Then `fluxforge replay` computes features
from the imported bronze, and a second import over the same files adds nothing.
"""
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from collector_support import segment_table
from daedalus_writer import (candle_and_bidask_records, expected_bronze, synthetic_records, write_ndjson,
                             write_parquet)
from fluxforge.bronze.schemas import CHANNEL_SCHEMAS
from fluxforge.bronze.segments import SegmentId, SegmentStore
from fluxforge.cli import main

START = datetime(2025, 3, 4, 10, 40, tzinfo=timezone.utc)  # 40 minutes: crosses 11:00


@pytest.fixture(scope="module")
def records():
    return synthetic_records(START, minutes=40) + candle_and_bidask_records(START, minutes=40)


def bronze_rows(data_dir, channel):
    segs = SegmentStore(data_dir / "segments").list("ready")
    tables = [segment_table(s, channel) for s in segs]
    return pa.concat_tables(tables).cast(CHANNEL_SCHEMAS[channel]).to_pylist()


def write(kind, root, records):
    if kind == "ndjson":
        return write_ndjson(root, records)
    return write_parquet(root, records, partitioned=(kind == "partitioned"))


@pytest.mark.parametrize("kind", ["ndjson", "flat", "partitioned"])
def test_every_field_round_trips(tmp_path, records, kind, capsys):
    write(kind, tmp_path / "old", records)
    data = tmp_path / "data"
    assert main(["import", "daedalus", str(tmp_path / "old"), "--to", str(data), "--host", "pi4"]) == 0
    out = capsys.readouterr().out

    segs = SegmentStore(data / "segments").list("ready")
    ids = [SegmentId.parse(s.name) for s in segs]
    assert [(i.host, i.start) for i in ids] == [("pi4", "20250304T100000Z"), ("pi4", "20250304T110000Z")]
    assert ids[0].seq < ids[1].seq  # the ETL reads the older hour first

    expected = expected_bronze(records)
    for channel in ("orderbook", "trades", "ticker", "ohlcv", "bidsasks"):
        got = bronze_rows(data, channel)
        assert len(got) == len(expected[channel]) > 0, channel
        for i, (g, e) in enumerate(zip(got, expected[channel])):
            assert g == e, f"{channel} row {i}"
    assert "trades.cost:" in out and "ticker.info_json:" in out
    assert "bidask.info_json:" in out  # bookTicker's update id `u`: no bronze column
    assert "records of channels bronze has no place for" not in out
    if kind == "ndjson":  # keys the Parquet writer had already dropped
        assert "trades.takerOrMaker:" in out and "trades.info_json:" in out
    if kind == "partitioned":
        assert "ETH-USDT-USDT -> ETH/USDT:USDT" in out


def test_replay_computes_features_from_imported_bronze(tmp_path, records):
    write_ndjson(tmp_path / "old", records)
    data = tmp_path / "data"
    assert main(["import", "daedalus", str(tmp_path / "old"), "--to", str(data)]) == 0
    out = tmp_path / "features"
    assert main(["replay", str(data / "segments"), "--out", str(out)]) == 0
    hf = ds.dataset(out / "hf", format="parquet", partitioning="hive").to_table()
    assert hf.num_rows > 100
    assert len(set(hf.column("symbol").to_pylist())) == 2  # BTC/USDT, ETH/USDT:USDT (as partition names)
    bars = ds.dataset(out / "bars", format="parquet", partitioning="hive").to_table()
    assert bars.num_rows > 0


def test_second_run_over_the_same_files_adds_nothing(tmp_path, records, capsys):
    write_parquet(tmp_path / "old", records, partitioned=True)  # ohlcv / bidask files (data_json) included
    data = tmp_path / "data"
    assert main(["import", "daedalus", str(tmp_path / "old"), "--to", str(data)]) == 0
    first = sorted(p.name for p in (data / "segments" / "ready").iterdir())
    # the ETL may have moved them on by now: the ledger, not ready/, must remember them
    store = SegmentStore(data / "segments")
    for seg in store.list("ready"):
        store.move(seg, "done")
    capsys.readouterr()
    assert main(["import", "daedalus", str(tmp_path / "old"), "--to", str(data)]) == 0
    assert "imported 0 rows" in capsys.readouterr().out
    assert list((data / "segments" / "ready").iterdir()) == []
    assert sorted(p.name for p in (data / "segments" / "done").iterdir()) == first
