"""`state/sync.sqlite` stays about one row per local file: rows of verified files that FluxForge
deleted (delete_after_upload, retention) are forgotten, and status counts in SQL and still knows
the time of the last verified upload when every row is gone."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import moto  # noqa: E402,F401
from syncdata import fresh_logging, make_config  # noqa: E402,F401
from test_sync import bucket, populate, write_config  # noqa: E402,F401

from fluxforge.cli import main  # noqa: E402
from fluxforge.config import load_config  # noqa: E402
from fluxforge.maintenance.retention import enforce  # noqa: E402
from fluxforge.observe.sync_status import sync_status  # noqa: E402
from fluxforge.sync.layout import done_segments, feature_files, segment_files  # noqa: E402
from fluxforge.sync.state import UploadState  # noqa: E402


def local_logicals(cfg) -> set[str]:
    out = {f.logical for f in feature_files(cfg)}
    for seg in done_segments(cfg):
        out |= {f.logical for f in segment_files(seg)}
    return out


def rows(cfg) -> set[str]:
    with UploadState(cfg.state_dir) as state:
        return {r.logical for r in state.all()}


def test_rows_of_deleted_files_are_forgotten_and_status_still_knows_the_last_upload(tmp_path, moto, bucket):
    populate(tmp_path, segments=4)
    cfg_path = write_config(tmp_path, moto.url, bucket, delete_after_upload=True)
    cfg = load_config(cfg_path)
    uploaded_everything = local_logicals(cfg)
    assert main(["sync", "-c", str(cfg_path)]) == 0
    remaining = local_logicals(cfg)
    assert remaining and len(remaining) < len(uploaded_everything)  # closed partitions and bronze went
    assert rows(cfg) == remaining  # one row per local file, none for what was deleted

    status = sync_status(cfg)
    assert status["uploaded_files"] == len(remaining) and status["backlog_files"] == 0
    last = status["last_upload"]
    assert last is not None

    # retention frees every verified file that is left: the table empties, the last upload time stays
    with UploadState(cfg.state_dir) as state:
        report = enforce(cfg, state, usage=lambda _p: 100.0)
    assert len(report.deleted) == len(remaining) and local_logicals(cfg) == set()
    assert rows(cfg) == set()
    status = sync_status(cfg)
    assert status["uploaded_files"] == 0 and status["last_upload"] == last
