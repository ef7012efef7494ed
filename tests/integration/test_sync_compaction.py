"""`delete_after_upload` waits for compaction (issue 17, item 8): moto's server mode, real boto3.

The first sync after midnight used to delete yesterday's verified parts before the daily
compaction ran, so nothing was ever merged and the bucket kept one small file per segment
in every partition.  Now a closed partition's local files go only once it is compacted."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import moto  # noqa: E402,F401
from syncdata import feature_day, fresh_logging, make_config, utc_day  # noqa: E402,F401
from test_sync import remote_keys, write_config  # noqa: E402

from fluxforge.cli import main  # noqa: E402
from fluxforge.maintenance.compaction import compact  # noqa: E402

_ids = itertools.count()


def parts_per_partition(keys: set[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in keys:
        out[k.rsplit("/", 1)[0]] = out.get(k.rsplit("/", 1)[0], 0) + 1
    return out


def test_delete_after_upload_keeps_parts_until_compacted(tmp_path, moto):
    bucket = f"fluxforge-compaction-{next(_ids)}"
    moto.client().create_bucket(Bucket=bucket)
    data = tmp_path / "data"
    day = utc_day(2).date().isoformat()
    cfg = make_config(data, compaction={"target_file_mb": 4})
    feature_day(cfg.features_dir, utc_day(2), segments=12, rows_per_segment=100)
    cfg_path = write_config(tmp_path, moto.url, bucket, delete_after_upload=True)

    # the first sync after midnight: everything is verified in S3, but nothing is compacted yet
    assert main(["sync", "-c", str(cfg_path)]) == 0
    local = sorted((data / "features").rglob("*.parquet"))
    assert len(local) == 24  # 12 hf + 12 bars parts stay for the compaction
    assert set(parts_per_partition(remote_keys(moto, bucket)).values()) == {12}

    # the daily compaction merges them; the next sync ships the merged files, drops the parts
    # they replace from the bucket, then frees the local copies
    assert compact(cfg).groups == 2
    assert main(["sync", "-c", str(cfg_path)]) == 0
    remote = parts_per_partition(remote_keys(moto, bucket))
    assert remote and set(remote.values()) == {1}
    assert all(f"date={day}" in p for p in remote)
    assert not list((data / "features").rglob("*.parquet"))
