"""Bronze reader: 2-D level arrays, grouping, and refusal of every kind of bad segment."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl_support import synthetic_market, write_segments
from fluxforge.etl.bronze_reader import BadSegment, SegmentReader


def test_books_grouped_per_symbol_and_sorted(tmp_path):
    tables = synthetic_market(seconds=20, depth=5)
    [seg] = write_segments(tmp_path, tables, 1, seconds=20)
    r = SegmentReader(seg, batch_rows=50)
    r.verify()
    seen = {}
    for batch in r.book_batches():
        for key, books in batch.items():
            assert (np.diff(books.column("timestamp").to_numpy()) >= 0).all()
            assert "symbol" not in books.column_names and "nonce" in books.column_names
            seen[key] = seen.get(key, 0) + books.num_rows
    assert seen == {("binance", "BTC/USDT"): 200, ("binance", "ETH/USDT"): 200}
    trades = r.trades()
    assert set(trades) == set(seen)
    assert set(trades[("binance", "BTC/USDT")].column("side").to_pylist()) <= {"buy", "sell"}


@pytest.fixture
def segment(tmp_path):
    [seg] = write_segments(tmp_path, synthetic_market(seconds=10, depth=5), 1, seconds=10)
    return seg


def _reason(seg):
    with pytest.raises(BadSegment) as e:
        SegmentReader(seg).verify()
    return str(e.value)


def test_corrupt_parquet_is_refused(segment):
    path = segment / "orderbook.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "orderbook.parquet: sha256" in _reason(segment)


def test_truncated_file_is_refused(segment):
    path = segment / "trades.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    assert "trades.parquet: size" in _reason(segment)


def test_wrong_schema_is_refused(segment):
    path = segment / "trades.parquet"
    t = pq.read_table(path)
    t = t.set_column(t.schema.get_field_index("price"), "price", pa.array([str(x) for x in t.column("price").to_pylist()]))
    pq.write_table(t, path)
    m = json.loads((segment / "manifest.json").read_text())
    m["channels"]["trades"].pop("sha256")
    m["channels"]["trades"].pop("bytes")
    (segment / "manifest.json").write_text(json.dumps(m))
    assert _reason(segment) == "trades.parquet: wrong schema: column 'price' is string, expected double"


def test_manifest_row_mismatch_is_refused(segment):
    m = json.loads((segment / "manifest.json").read_text())
    m["channels"]["orderbook"]["rows"] += 1
    (segment / "manifest.json").write_text(json.dumps(m))
    assert "rows but manifest.json says" in _reason(segment)


def test_missing_manifest_and_unlisted_file_are_refused(segment):
    m = json.loads((segment / "manifest.json").read_text())
    del m["channels"]["events"]
    (segment / "manifest.json").write_text(json.dumps(m))
    assert _reason(segment) == "events.parquet is present but not listed in manifest.json"
    (segment / "manifest.json").unlink()
    assert _reason(segment) == "manifest.json is missing"


def test_footer_garbage_without_manifest_checks_is_refused(segment):
    path = segment / "orderbook.parquet"
    path.write_bytes(b"PAR1" + b"\0" * 64)
    m = json.loads((segment / "manifest.json").read_text())
    m["channels"]["orderbook"] = {"file": "orderbook.parquet"}
    (segment / "manifest.json").write_text(json.dumps(m))
    assert "orderbook.parquet: not a readable Parquet file" in _reason(segment)


@pytest.mark.parametrize("name", ["../outside.parquet", "/outside.parquet", "orderbook.parquet", "trades.arrows"])
def test_manifest_file_entries_are_confined_to_the_channel_files(segment, name):
    """A manifest naming another file (outside the segment, or another channel's) is refused, even
    when that file is a valid copy whose size and sha256 the manifest states correctly."""
    import shutil
    from fluxforge.fsio import sha256_file

    target = segment / name if not name.startswith("/") else segment.parent / name.lstrip("/")
    target = target.resolve()
    if name != "orderbook.parquet":
        shutil.copy(segment / "trades.parquet", target)
    m = json.loads((segment / "manifest.json").read_text())
    m["channels"]["trades"].update(file=name if not name.startswith("/") else str(target),
                                   sha256=sha256_file(target), bytes=target.stat().st_size,
                                   rows=pq.ParquetFile(target).metadata.num_rows)
    (segment / "manifest.json").write_text(json.dumps(m))
    assert "only 'trades.parquet' is allowed" in _reason(segment)
