"""The bronze backup does not depend on the ETL (issue 17, item 9): moto over HTTP, real boto3,
retention on a real small tmpfs.

Finished segments in ready/ and failed/ are uploaded like done/ ones, under keys that do not
name the state (so the ETL moving a segment later uploads nothing again); retention may free a
verified copy in any state but active/ and processing/ -- ready/ only when the operator allows it."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import moto  # noqa: E402,F401
from syncdata import bronze_segment, fresh_logging, make_config, utc_day  # noqa: E402,F401
from test_retention import fill_to, set_retention, write_config  # noqa: E402

from fluxforge.bronze.segments import SegmentStore  # noqa: E402
from fluxforge.cli import main  # noqa: E402

_ids = itertools.count()


def remote_segments(moto, bucket: str) -> set[str]:
    return {k.split("/")[-2] for k in remote_keys_all(moto, bucket) if k.endswith("/manifest.json")}


def test_ready_and_failed_bronze_is_uploaded_and_freed_only_as_allowed(mount_tmpfs, moto, capsys):
    fs = mount_tmpfs("24m")
    bucket = f"fluxforge-backup-{next(_ids)}"
    moto.client().create_bucket(Bucket=bucket)
    cfg = make_config(fs / "data")
    store = SegmentStore(cfg.segments_dir).ensure()
    segs = [bronze_segment(cfg.segments_dir, "pi01", 1 + i, utc_day(3).replace(hour=i), rows=1000, seed=i)
            for i in range(6)]  # all in done/
    ready = [store.move(s, "ready") for s in segs[3:]]      # the ETL is down: never processed
    store.fail(segs[2], "refused by the ETL")     # the ETL refused one
    active = store.path("active", "seg-pi01-20200101T000000Z-000099")
    active.mkdir()
    (active / "orderbook.arrows").write_bytes(b"journal")
    cfg_path = write_config(fs, moto.url, bucket)

    assert main(["sync", "-c", str(cfg_path)]) == 0
    assert remote_segments(moto, bucket) == {s.name for s in segs}
    assert not any(k.endswith("reason.txt") or "000099" in k for k in remote_keys_all(moto, bucket))

    # the ETL catches up later: moving a segment to done/ uploads nothing again
    store.move(store.move(ready[0], "processing"), "done")
    before = remote_keys_all(moto, bucket)
    assert main(["sync", "-c", str(cfg_path)]) == 0
    assert remote_keys_all(moto, bucket) == before

    # a full disk: retention frees verified done/ and failed/ copies, never ready/ by default
    fill_to(fs, 97)
    assert main(["retention", "-c", str(cfg_path)]) == 0
    names = lambda state: [p.name for p in store.list(state)]  # noqa: E731
    assert names("done") == [] and names("failed") == [] and names("ready") == [r.name for r in ready[1:]]
    assert active.is_dir()
    assert "retention_freed_unprocessed_segment" not in capsys.readouterr().err

    # the operator allows freeing unprocessed segments: they go too (loudly), active/ stays
    set_retention(cfg_path, free_unprocessed=True)
    assert main(["retention", "-c", str(cfg_path)]) == 0
    assert names("ready") == []
    assert active.is_dir()
    err = capsys.readouterr().err
    assert err.count("retention_freed_unprocessed_segment") == len(ready) - 1


def remote_keys_all(moto, bucket: str) -> set[str]:
    keys = set()
    for page in moto.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys
