"""Bronze reader: 2-D level arrays, grouping, and refusal of every kind of bad segment."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl_support import synthetic_market, write_segments
from fluxforge.etl.bronze_reader import BadSegment, SegmentReader, list_column_2d


def test_list_column_2d_pads_thin_books_and_caps_levels():
    col = pa.array([[1.0, 2.0, 3.0], [4.0], None, [5.0, 6.0, 7.0, 8.0]], pa.list_(pa.float64()))
    out = list_column_2d(col.slice(0), 3)
    expected = np.array([[1, 2, 3], [4, np.nan, np.nan], [np.nan] * 3, [5, 6, 7]], dtype=float)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(list_column_2d(col.slice(3), 2), [[5.0, 6.0]])
    uniform = pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float64()))
    out = list_column_2d(uniform, 5)
    assert out.shape == (2, 5) and np.isnan(out[:, 2:]).all()


def test_books_grouped_per_symbol_and_sorted(tmp_path):
    tables = synthetic_market(seconds=20, depth=5)
    [seg] = write_segments(tmp_path, tables, 1, seconds=20)
    r = SegmentReader(seg, levels=3, batch_rows=50)
    r.verify()
    seen = {}
    for batch in r.book_batches():
        for key, books in batch.items():
            assert (np.diff(books.timestamp) >= 0).all()
            assert books.bid_px.shape == (len(books), 3)
            seen[key] = seen.get(key, 0) + len(books)
    assert seen == {("binance", "BTC/USDT"): 200, ("binance", "ETH/USDT"): 200}
    trades = r.trades()
    assert set(trades) == set(seen)
    assert set(np.unique(trades[("binance", "BTC/USDT")].side)) <= {-1, 1}


@pytest.fixture
def segment(tmp_path):
    [seg] = write_segments(tmp_path, synthetic_market(seconds=10, depth=5), 1, seconds=10)
    return seg


def _reason(seg):
    with pytest.raises(BadSegment) as e:
        SegmentReader(seg, levels=5).verify()
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
