"""Damaged Daedalus inputs are counted and reported; everything readable is still imported.

Truncated Parquet, a Parquet column of the wrong type, garbage and wrongly typed
NDJSON lines, records of channels bronze lacks, empty files and a gzip segment cut
off part-way go next to good files; the import exits 1, names each problem, and the
good rows arrive complete (compared with the rows the records must become).
"""
import gzip
import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from collector_support import segment_table
from daedalus_writer import (candle_and_bidask_records, expected_bronze, record, synthetic_records, write_ndjson,
                             write_parquet)
from fluxforge.bronze.schemas import CHANNEL_SCHEMAS
from fluxforge.bronze.segments import SegmentStore
from fluxforge.migrate.daedalus_import import import_daedalus

START = datetime(2025, 5, 6, 7, 0, tzinfo=timezone.utc)
T = datetime(2025, 5, 6, 7, 30, tzinfo=timezone.utc)

GARBAGE = [
    "this is not json",
    json.dumps(dict(record("ticker", "binance", "BTC/USDT", {"bid": 1.0}, T), symbol=None)),
    "[1, 2, 3]",
    json.dumps({"capture_ts": T.isoformat(), "data": {"type": "l2update"}, "metadata": {"source": "coinbase"}}),
    json.dumps(record("trades", "binance", "BTC/USDT", [{"id": "1", "price": "abc", "amount": 1.0}], T)),
    json.dumps(record("orderbook", "binance", "BTC/USDT", {"bids": [[1.0]], "asks": []}, T)),
    json.dumps(record("orderbook", "binance", "BTC/USDT", {"bids": [], "asks": [], "nonce": "x"}, T)),
    json.dumps(record("ticker", "binance", "BTC/USDT", "not a ticker", T)),
    json.dumps(dict(record("ticker", "binance", "BTC/USDT", {"bid": 1.0}, T), capture_ts=None, collected_at=None)),
    '{"type": "trades", "exchange": "binance", "symbol": "BTC/USDT", "data": [], "collected_at": 1',
    json.dumps(record("ohlcv", "binance", "BTC/USDT", [[None, 1.0, 2.0, 0.5, 1.5, 3.0]], T)),
    json.dumps(record("ohlcv", "binance", "BTC/USDT", [[1746516600000, 1.0, 2.0]], T)),
    json.dumps(record("ohlcv", "binance", "BTC/USDT", {"open": 1.0}, T)),
    json.dumps(record("bidask", "binance", "BTC/USDT", {"BTC/USDT": {"symbol": "BTC/USDT", "bid": "1.0"}}, T)),
    json.dumps(record("bidask", "binance", "BTC/USDT", [1.0, 2.0], T)),
    # the native Coinbase collector's messages, wrongly shaped
    json.dumps({"capture_ts": T.isoformat(), "data": {"channel": "l2_data", "timestamp": "2025-05-06T07:30:00Z",
                "sequence_num": 3, "events": [{"type": "update", "product_id": "BTC-USD",
                                               "updates": [{"side": "middle", "price_level": "1", "new_quantity": "1"}]}]}}),
    json.dumps({"capture_ts": T.isoformat(), "data": {"channel": "market_trades", "events": [{"type": "update", "trades": [
        {"trade_id": "1", "product_id": "BTC-USD", "price": "abc", "size": "1", "side": "BUY",
         "time": "2025-05-06T07:30:00Z"}]}]}}),
    json.dumps({"capture_ts": None, "data": {"channel": "ticker", "events": []}}),
]


def test_damaged_inputs_are_counted_and_the_rest_imports(tmp_path):
    good = synthetic_records(START, minutes=10) + candle_and_bidask_records(START, minutes=10)
    old = tmp_path / "old"
    write_ndjson(old / "ndjson", good)
    ndjson = next((old / "ndjson").iterdir())
    lines = ndjson.read_text().splitlines()
    # garbage between good lines, and two records of channels bronze has no place for
    mixed = lines[:50] + GARBAGE + [json.dumps(record("balance", "binance", "BTC/USDT", {"free": {}}, T)),
                                    json.dumps(record("myTrades", "binance", "BTC/USDT", [], T)),
                                    json.dumps({"capture_ts": T.isoformat(), "data": {"channel": "status"}})] + lines[50:]
    ndjson.write_text("\n".join(mixed) + "\n")

    parquet = write_parquet(tmp_path / "p", synthetic_records(START, minutes=3, seed=9), partitioned=False)
    truncated = old / "orderbook" / "segment_truncated.parquet"
    truncated.parent.mkdir(parents=True)
    truncated.write_bytes(parquet[0].read_bytes()[: parquet[0].stat().st_size // 2])
    wrong = old / "trades" / "segment_wrongtype.parquet"
    wrong.parent.mkdir(parents=True)
    t = pq.read_table(parquet[1]) if "trades" in str(parquet[1]) else pq.read_table(next(p for p in parquet if "trades" in str(p)))
    t = t.set_column(t.schema.get_field_index("price"), "price", pa.array(["abc"] * t.num_rows))
    pq.write_table(t, wrong)
    (old / "empty.ndjson").write_bytes(b"")
    (old / "empty.parquet").write_bytes(b"")
    # a gzip NDJSON segment cut off part-way: the lines before the cut import
    cut_records = synthetic_records(datetime(2025, 5, 6, 9, 0, tzinfo=timezone.utc), minutes=2, seed=3)
    blob = gzip.compress("".join(json.dumps(r) + "\n" for r in cut_records).encode())
    (old / "segment_20250506T09_00001.ndjson.gz").write_bytes(blob[: len(blob) * 3 // 4])

    report = import_daedalus([old], tmp_path / "data", show_progress=False)

    assert sorted(p for p, _ in report.bad_files) == sorted([str(truncated), str(wrong)])
    assert "'price'" in dict(report.bad_files)[str(wrong)]
    assert [p for p, _, _ in report.damaged_files] == [str(old / "segment_20250506T09_00001.ndjson.gz")]
    assert sorted(report.empty_files) == sorted([str(old / "empty.ndjson"), str(old / "empty.parquet")])
    assert sum(report.bad_lines.values()) == len(GARBAGE)
    assert any("native Coinbase" in r for r in report.bad_lines)
    assert any("trade price is str" in r for r in report.bad_lines)
    assert {"a candle without its open time", "a candle is not [time, open, high, low, close, volume]",
            "data is dict, not a candle list", "bid is str, not a number", "data is list, not a bid/ask map",
            "l2_data side 'middle'", "trade price is 'abc', not a decimal",
            "no receive time (capture_ts missing or unreadable)"} <= set(report.bad_lines)
    assert dict(report.unmapped_channels) == {"balance": 1, "myTrades": 1, "coinbase status": 1}
    text = "\n".join(report.lines())
    assert "damaged file" in text and "unreadable file" in text and f"malformed lines skipped: {len(GARBAGE)}" in text
    assert report.problems > 0

    # every good row of the good file arrived, complete; the cut file's rows before the damage too
    segs = SegmentStore(tmp_path / "data" / "segments").list("ready")
    kept = report.damaged_files[0][1]
    want = expected_bronze(good)
    for channel in ("orderbook", "trades", "ticker", "ohlcv", "bidsasks"):
        got = pa.concat_tables([segment_table(s, channel) for s in segs]).cast(CHANNEL_SCHEMAS[channel])
        rows = got.to_pylist()
        before_cut = [r for r in rows if r["recv_ns"] >= 1746522000 * 10**9]  # 09:00 onwards: the cut file
        assert [r for r in rows if r not in before_cut] == want[channel]
    assert sum(report.rows.values()) == sum(len(v) for v in want.values()) + kept


def test_a_rerun_does_not_redo_files_but_reports_new_damage(tmp_path):
    old = tmp_path / "old"
    write_ndjson(old, synthetic_records(START, minutes=5))
    first = import_daedalus([old], tmp_path / "data", show_progress=False)
    assert first.problems == 0 and len(first.segments) == 1
    (old / "late.ndjson").write_text("garbage\n")
    again = import_daedalus([old, old], tmp_path / "data", show_progress=False)
    assert again.segments == [] and again.files_already_imported == [str(p) for p in sorted(old.glob("segment_*"))]
    assert sum(again.bad_lines.values()) == 1


def test_importing_earlier_hours_after_later_ones_warns(tmp_path):
    later = tmp_path / "later"
    write_ndjson(later, synthetic_records(datetime(2025, 5, 6, 9, 0, tzinfo=timezone.utc), minutes=5))
    earlier = tmp_path / "earlier"
    write_ndjson(earlier, synthetic_records(START, minutes=5, seed=2))
    assert import_daedalus([later], tmp_path / "data", show_progress=False).warnings == []
    report = import_daedalus([earlier], tmp_path / "data", show_progress=False)
    assert len(report.segments) == 1
    assert any("time go back" in w and "2025-05-06T09:00Z" in w for w in report.warnings)
    other = import_daedalus([earlier], tmp_path / "other", host="pi2", show_progress=False)
    assert other.warnings == []


def test_progress_is_drawn_when_asked(tmp_path, capsys):
    write_ndjson(tmp_path / "old", synthetic_records(START, minutes=2))
    import_daedalus([tmp_path / "old"], tmp_path / "data", show_progress=True)
    err = capsys.readouterr().err
    assert "import: reading [" in err and "import: segments [" in err


def test_parquet_rows_that_cannot_be_bronze_are_counted(tmp_path):
    from daedalus_writer import old_rows, schema

    recs = [r for r in synthetic_records(START, minutes=1) if r["type"] == "orderbook"]
    rows = [row for r in recs for row in old_rows(r)]
    rows[0]["bids"][3]["size"] = None                          # a level without size
    rows[1].update(capture_ts=None, collected_at=0)            # the old writer's "no time"
    rows[2].update(capture_ts=None)                            # collected_at (ms) stands in
    path = tmp_path / "old" / "orderbook" / "segment_20250506T07_00001.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema("orderbook", partitioned=False)), path)
    report = import_daedalus([tmp_path / "old"], tmp_path / "data", show_progress=False)
    assert dict(report.dropped_rows) == {"book level without price or size": 1,
                                         "no receive time (capture_ts and collected_at missing)": 1}
    got = pq.read_table(SegmentStore(tmp_path / "data" / "segments").list("ready")[0] / "orderbook.parquet")
    assert got.num_rows == len(rows) - 2
    assert rows[2]["collected_at"] * 1_000_000 in got.column("recv_ns").to_pylist()


def test_generic_parquet_rows_that_cannot_be_bronze_are_counted(tmp_path):
    """The old writer's data_json rows (its ohlcv / bidask files): a row that is not JSON or not a
    candle list is counted with its row number; every other row imports, compared field by field."""
    from daedalus_writer import old_rows, schema

    recs = [r for r in candle_and_bidask_records(START, minutes=2) if r["type"] == "ohlcv"]
    rows = [row for r in recs for row in old_rows(r)]
    rows[0]["data_json"] = '[[1746514800000, 1.0, 2.0'       # cut off
    rows[3]["data_json"] = '[[1746514800000, "x", 2.0, 0.5, 1.5, 3.0]]'
    rows[5].update(capture_ts=None, collected_at=0)            # the old writer's "no time"
    path = tmp_path / "old" / "ohlcv" / "segment_20250506T07_00001.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema("ohlcv", partitioned=False)), path)
    report = import_daedalus([tmp_path / "old"], tmp_path / "data", show_progress=False)
    assert sorted(report.bad_lines.items()) == [("candle open is str, not a number", 1),
                                                ("data_json is not JSON (Expecting ',' delimiter: line 1 column 26 "
                                                 "(char 25))", 1)]
    assert [line for _, line, _ in report.bad_line_examples] == [1, 4]
    assert dict(report.dropped_rows) == {"no receive time (capture_ts and collected_at missing)": 1}
    got = segment_table(SegmentStore(tmp_path / "data" / "segments").list("ready")[0], "ohlcv")
    assert got.cast(CHANNEL_SCHEMAS["ohlcv"]).to_pylist() == expected_bronze(
        [r for i, r in enumerate(recs) if i not in (0, 3, 5)])["ohlcv"]
