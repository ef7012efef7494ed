"""Compaction: merged files hold exactly the rows of their inputs, only closed partitions are touched,
and a crash at any step converges on the next run."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from syncdata import (bronze_segment, feature_day, fluxforge_cli, fresh_logging, make_config,  # noqa: E402,F401
                      partition_rows, run_and_maybe_kill, utc_day)

from fluxforge.maintenance import compaction  # noqa: E402
from fluxforge.maintenance.compaction import JOURNAL, TMP_PREFIX, closed_before, compact, compaction_metadata, covered_parts  # noqa: E402
from fluxforge.bronze.segments import SegmentStore  # noqa: E402


def partitions(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob("part-*.parquet")})


def snapshot(root: Path) -> dict[Path, object]:
    return {p: partition_rows(p) for p in partitions(root)}


@pytest.fixture
def tree(tmp_path):
    cfg = make_config(tmp_path / "data", compaction={"target_file_mb": 1})
    feature_day(cfg.features_dir, utc_day(2), segments=24, rows_per_segment=600, symbols=("BTC-USDT", "ETH-USDT"))
    feature_day(cfg.features_dir, utc_day(0), segments=6, rows_per_segment=100, seed=1)
    return cfg


def test_merges_closed_partitions_losslessly(tree):
    before = snapshot(tree.features_dir)
    old_day, today = utc_day(2).date().isoformat(), utc_day(0).date().isoformat()
    report = compact(tree)
    assert report.groups >= 4 and report.files_in == 24 * 4
    after = snapshot(tree.features_dir)
    assert set(before) == set(after)
    for part, rows in before.items():
        assert after[part].equals(rows), part
        files = list(part.glob("part-*.parquet"))
        if f"date={old_day}" in str(part):
            assert len(files) == 1, files  # 24 small parts -> 1 file under the 1 MB target
            meta = compaction_metadata(files[0])
            assert len(meta["covers"]) == 24 and meta["rows"] == rows.num_rows
            assert covered_parts(files[0]) == meta["covers"]
            # order kept: timestamps already sorted inside the merged file
            ts = pq.read_table(files[0]).column("timestamp").to_pylist()
            assert ts == sorted(ts)
            assert pq.read_schema(files[0]).remove_metadata().equals(
                rows.schema.remove_metadata())
        else:
            assert f"date={today}" in str(part) and len(files) == 6  # open partition untouched
    assert compact(tree).groups == 0  # nothing left to do


def test_target_size_splits_groups(tmp_path):
    cfg = make_config(tmp_path / "data", compaction={"target_file_mb": 0.12})
    feature_day(cfg.features_dir, utc_day(3), segments=12, rows_per_segment=400)
    hf = next(p for p in partitions(cfg.features_dir) if "/hf/" in str(p))
    rows = partition_rows(hf)
    sizes = [p.stat().st_size for p in hf.glob("part-*")]
    compact(cfg)
    files = sorted(hf.glob("part-*"))
    assert 1 < len(files) < 12, (sizes, files)
    assert all(f.stat().st_size <= 0.12 * 1024 * 1024 for f in files)
    assert partition_rows(hf).equals(rows)
    # the file ranges tile the segment sequence without overlap
    covers = [c for f in files for c in covered_parts(f)]
    assert len(covers) == len(set(covers)) == 12


def test_dry_run_changes_nothing(tree):
    files = sorted(tree.features_dir.rglob("*"))
    report = compact(tree, dry_run=True)
    assert report.groups > 0 and report.files_out == 0
    assert sorted(tree.features_dir.rglob("*")) == files


@pytest.mark.parametrize("start_hour, open_from_days_ago", [(12, 2), (0, 3)])
def test_pending_segment_keeps_its_dates_open(tmp_path, start_hour, open_from_days_ago):
    """A segment still in processing/ keeps its start date open, and the day before when it started
    within the ETL's reorder window + 1 h of midnight (carried rows may still land there)."""
    cfg = make_config(tmp_path / "data")
    for days_ago in (4, 3, 2):
        feature_day(cfg.features_dir, utc_day(days_ago), segments=4, rows_per_segment=50)
    store = SegmentStore(cfg.segments_dir).ensure()
    seg = bronze_segment(cfg.segments_dir, "pi01", 99, utc_day(2).replace(hour=start_hour))
    seg.rename(store.dir("processing") / seg.name)
    assert closed_before(cfg) == utc_day(open_from_days_ago).date()
    compact(cfg)
    for part in partitions(cfg.features_dir):
        day = part.name[len("date="):]
        closed = day < utc_day(open_from_days_ago).date().isoformat()
        assert len(list(part.glob("part-*"))) == (1 if closed else 4), part


def test_part_rewritten_after_merge_is_not_merged_again(tree, capsys):
    hf = next(p for p in partitions(tree.features_dir) if "/hf/" in str(p) and utc_day(2).date().isoformat() in str(p))
    original = sorted(hf.glob("part-*"))[3]
    copy = original.read_bytes()
    compact(tree)
    merged = next(hf.glob("part-*"))
    original.write_bytes(copy)  # an ETL redo of a segment whose rows are already merged
    assert compact(tree).groups == 0
    assert sorted(hf.glob("part-*")) == sorted([merged, original])
    assert "compaction_part_rewritten_after_merge" in capsys.readouterr().out


def test_failed_verification_keeps_inputs(tree, monkeypatch):
    before = snapshot(tree.features_dir)
    real = pq.ParquetWriter.write_table

    def lossy(self, table, *a, **kw):  # a writer that silently loses the first row
        return real(self, table.slice(1), *a, **kw)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", lossy)
    report = compact(tree)  # every merge fails its check; each is reported and the run goes on
    monkeypatch.undo()
    assert len(report.failed) == 4 and report.groups == report.files_out == 0 and not report.unreadable
    assert all("does not match" in why for _output, why in report.failed)
    assert snapshot(tree.features_dir).keys() == before.keys()
    for part, rows in before.items():
        assert partition_rows(part).equals(rows)
    assert not list(tree.features_dir.rglob(".*"))  # no temp or journal left behind


@pytest.mark.parametrize("crash_after", ["journal", "rename", "one_input_removed"])
def test_recovery_from_each_crash_point(tree, monkeypatch, crash_after):
    before = snapshot(tree.features_dir)

    class Crash(BaseException):
        pass

    real_replace = os.replace

    def crash_replace(src, dst):
        if crash_after == "journal" and str(dst).endswith(".parquet"):
            raise Crash()
        real_replace(src, dst)

    def crash_finish(partition, inputs):
        if crash_after == "one_input_removed":
            (partition / inputs[0]).unlink()
        raise Crash()

    monkeypatch.setattr(compaction.os, "replace", crash_replace)
    if crash_after != "journal":
        monkeypatch.setattr(compaction, "_finish", crash_finish)
    with pytest.raises(Crash):
        compact(tree)
    monkeypatch.undo()
    # the partition is readable now (possibly with a duplicate file until the next run) ...
    victim = next(p for p in partitions(tree.features_dir) if (p / JOURNAL).exists())
    assert pq.ParquetDataset(victim).read().num_rows >= before[victim].num_rows
    # ... and the next run converges to exactly the original rows
    report = compact(tree)
    assert report.recovered == 1
    for part, rows in before.items():
        assert partition_rows(part).equals(rows), part
    assert not list(tree.features_dir.rglob(".*"))


def test_sigkill_at_random_points_converges(tmp_path):
    cfg_path = tmp_path / "config.yaml"
    data = tmp_path / "data"
    cfg_path.write_text(yaml.safe_dump({"data_dir": str(data), "host_id": "pi01",
                                        "compaction": {"target_file_mb": 0.2}, "logging": {"format": "json"}}))
    cfg = make_config(data)
    rnd = random.Random(5)
    cmd = fluxforge_cli("compact", "--config", str(cfg_path))
    killed = 0
    before = {}
    for attempt in range(12):
        if killed >= 3:
            break
        # fresh work for every run: another closed day of small parts
        feature_day(cfg.features_dir, utc_day(2 + attempt), segments=48, rows_per_segment=300,
                    symbols=("BTC-USDT", "ETH-USDT"), seed=attempt)
        before.update({p: partition_rows(p) for p in partitions(cfg.features_dir) if p not in before})
        merging = lambda: any(cfg.features_dir.rglob(f"{TMP_PREFIX}*"))  # noqa: E731
        killed += run_and_maybe_kill(cmd, rnd.uniform(0.0, 0.3), started=merging)
    assert killed >= 2  # runs were interrupted somewhere
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    for part, rows in before.items():
        assert partition_rows(part).equals(rows), part
        assert len(list(part.glob("part-*"))) < 24
    assert not list(cfg.features_dir.rglob(".*"))
