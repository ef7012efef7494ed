"""Format 1 bronze (every orderbook row a top-N book, no kind / prev_nonce / checksum columns)
is still read: each row is a snapshot, and the features equal those of the same rows in format 2."""
from __future__ import annotations

import json

import pyarrow.parquet as pq

from etl_support import read_tree, synthetic_market, tables_equal, write_segments
from fluxforge.config import FeatureOptions
from fluxforge.etl.runner import EtlRunner
from fluxforge.fsio import sha256_file


def _as_format1(seg) -> None:
    """Rewrite a segment's orderbook.parquet with the format 1 columns, fixing the manifest."""
    path = seg / "orderbook.parquet"
    table = pq.read_table(path).drop_columns(["kind", "prev_nonce", "checksum"])
    pq.write_table(table, path, compression="zstd")
    manifest = json.loads((seg / "manifest.json").read_text())
    entry = manifest["channels"]["orderbook"]
    entry.update(bytes=path.stat().st_size, sha256=sha256_file(path), rows=table.num_rows)
    manifest["format_version"] = 1
    (seg / "manifest.json").write_text(json.dumps(manifest))


def test_format1_segments_equal_format2_snapshots(tmp_path):
    market = synthetic_market(seconds=30)
    out = {}
    for fmt in (1, 2):
        root = tmp_path / f"v{fmt}"
        segs = write_segments(root / "segments/ready", market, 3, seconds=30)
        if fmt == 1:
            for seg in segs:
                _as_format1(seg)
            assert "kind" not in pq.read_schema(segs[0] / "orderbook.parquet").names
        runner = EtlRunner(root / "segments", root / "features", root / "state", FeatureOptions(hf_emit_interval=0))
        assert [o.state for o in runner.run_once()] == ["done"] * 3
        out[fmt] = read_tree(root / "features")
    assert out[1].num_rows > 0 and tables_equal(out[1], out[2])
