"""Compaction on a full disk (a tiny tmpfs; CI is root): one clear error line, every input kept."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from syncdata import feature_day, fresh_logging, make_config, partition_rows, utc_day  # noqa: E402,F401

from fluxforge.cli import main  # noqa: E402


@pytest.fixture
def tiny_fs(mount_tmpfs):
    return mount_tmpfs("6m")


def test_enospc_keeps_inputs_and_says_so(tiny_fs, tmp_path, capsys):
    cfg = make_config(tiny_fs / "data")
    feature_day(cfg.features_dir, utc_day(2), segments=24, rows_per_segment=600)
    partitions = sorted({p.parent for p in cfg.features_dir.rglob("part-*.parquet")})
    before = {p: partition_rows(p) for p in partitions}
    with open(tiny_fs / "filler", "wb") as f:  # leave less room than one merged file needs
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    os.truncate(tiny_fs / "filler", os.path.getsize(tiny_fs / "filler") - 100_000)
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({"data_dir": str(tiny_fs / "data"), "logging": {"format": "json"}}))
    assert main(["compact", "-c", str(cfg_path)]) == 1
    err = capsys.readouterr().err
    assert "compaction stopped, inputs kept" in err and "Traceback" not in err
    for p, rows in before.items():
        assert partition_rows(p).equals(rows)
    assert not list(cfg.features_dir.rglob(".compacting-*"))
    (tiny_fs / "filler").unlink()
    assert main(["compact", "-c", str(cfg_path)]) == 0  # with room again it completes
    for p, rows in before.items():
        assert partition_rows(p).equals(rows) and len(list(p.glob("part-*"))) == 1
