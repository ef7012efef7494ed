"""A segment that breaks after it has fed the engines: backfill (no per-segment snapshot) == replay (snapshot + undo).

Replay snapshots the engine bank before every segment and restores it when one
fails; backfill takes no snapshot and reruns the task without the segment
(fluxforge/backfill/unit_job.py).  The middle segment's orderbook here passes
verification (sizes and sha256 rewritten to match) but its second row group's
bid prices are garbage, so it fails only after its first 65,536 book rows went through the
kernels: the state it leaves behind must not reach the third segment.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fleet_bronze import write_fleet  # noqa: E402
from backfill_support import features, replay_per_host, write_config  # noqa: E402

from fluxforge.cli import main  # noqa: E402
from fluxforge.fsio import sha256_file  # noqa: E402


def break_second_row_group(seg: Path) -> None:
    """Overwrite the bid prices of the orderbook's second row group with garbage (its exchange and
    symbol columns stay readable, so the backfill's stream scan passes); the manifest vouches for it."""
    path = seg / "orderbook.parquet"
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups >= 2, meta.num_row_groups
    rg = meta.row_group(1)
    cols = [rg.column(i) for i in range(rg.num_columns) if rg.column(i).path_in_schema.startswith("bid_px")]
    start = min(c.dictionary_page_offset or c.data_page_offset for c in cols)
    end = max((c.dictionary_page_offset or c.data_page_offset) + c.total_compressed_size for c in cols)
    data = bytearray(path.read_bytes())
    data[start:end] = b"\xff" * (end - start)
    path.write_bytes(bytes(data))
    manifest = json.loads((seg / "manifest.json").read_text())
    manifest["channels"]["orderbook"].update(sha256=sha256_file(path), bytes=path.stat().st_size)
    (seg / "manifest.json").write_text(json.dumps(manifest))


def test_segment_failing_after_feeding_the_engines_is_skipped_like_replay(tmp_path, capsys):
    hosts = write_fleet(tmp_path / "bronze", hosts=("pi01",), segments=3, seconds=600.0, hz=200.0)
    broken = hosts["pi01"][1]
    break_second_row_group(broken)
    reference = replay_per_host(hosts, tmp_path / "replay")
    cfg = write_config(tmp_path / "c.yaml")
    rc = main(["backfill", str(tmp_path / "bronze" / "pi01"), "--out", str(tmp_path / "out"), "-c", str(cfg),
               "--workers", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"skipped {broken.name}: orderbook.parquet: unreadable" in out
    want = features(reference)
    assert want and not any(broken.name in k for k in want)
    assert any(hosts["pi01"][2].name in k for k in want)  # the segment after it is there, from clean state
    assert features(tmp_path / "out") == want
