"""Compaction with a part it cannot read (a truncated file, a corrupt page: bit rot on an SD card):
the file is kept as it is and named, every other merge is made, and the run fails so that it is seen.
Before, the first such file raised out of the planning (or the merge) every day, and nothing after
it in the history was ever compacted again."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from syncdata import feature_day, fluxforge_cli, fresh_logging, make_config, partition_rows, utc_day  # noqa: E402,F401

from fluxforge.maintenance.compaction import compact, covered_parts  # noqa: E402
from fluxforge.sync.run import is_compacted  # noqa: E402

DAY = utc_day(2)


@pytest.fixture
def tree(tmp_path):
    cfg = make_config(tmp_path / "data", compaction={"target_file_mb": 1},
                      metrics={"textfile_dir": str(tmp_path / "textfiles")})
    (tmp_path / "textfiles").mkdir()
    feature_day(cfg.features_dir, DAY, segments=24, rows_per_segment=600, symbols=("BTC-USDT", "ETH-USDT"))
    return cfg


def hf_partition(cfg, symbol: str = "BTC-USDT") -> Path:
    return next(p.parent for p in cfg.features_dir.glob(f"hf/*/symbol={symbol}/date=*/part-*.parquet"))


def all_partitions(cfg) -> list[Path]:
    return sorted({p.parent for p in cfg.features_dir.rglob("part-*.parquet")})


def readable_rows(partition: Path, bad: Path) -> pa.Table:
    """The rows of every readable file of the partition, in timestamp order."""
    tables = [pq.read_table(p) for p in sorted(partition.glob("part-*.parquet")) if p != bad]
    return pa.concat_tables(tables).sort_by("timestamp")


def truncate_footer(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-20])


def corrupt_first_page(path: Path) -> None:
    """Overwrite the first data page's header: the footer still reads, the data does not."""
    offset = pq.read_metadata(path).row_group(0).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset:offset + 48] = b"\xff" * 48
    path.write_bytes(bytes(data))


def test_a_part_whose_footer_is_unreadable_is_kept_and_the_rest_is_merged(tree):
    hf = hf_partition(tree)
    parts = sorted(hf.glob("part-*.parquet"))
    bad = parts[9]
    truncate_footer(bad)
    bad_bytes = bad.read_bytes()
    rows = {p: (readable_rows(p, bad) if p == hf else partition_rows(p)) for p in all_partitions(tree)}

    report = compact(tree)  # the old planner raised ArrowInvalid here, for this and every later run

    assert report.unreadable.keys() == {str(bad)} and "ArrowInvalid" in report.unreadable[str(bad)]
    assert not report.failed
    assert bad.read_bytes() == bad_bytes  # kept as it is
    merged = sorted(p for p in hf.glob("part-*.parquet") if p != bad)
    # the run of parts ends at the bad one: 1-9 and 11-24 merged, never across it
    assert [len(covered_parts(p)) for p in merged] == [9, 14]
    assert bad.name not in {c for p in merged for c in covered_parts(p)}
    for partition, before in rows.items():
        if partition != hf:
            assert len(list(partition.glob("part-*.parquet"))) == 1, partition
            assert partition_rows(partition).equals(before)
    assert readable_rows(hf, bad).equals(rows[hf])
    assert compact(tree).groups == 0  # nothing more to merge; the bad file is named again
    assert is_compacted(tree, hf)  # and sync's check of the partition does not raise either


def test_an_unreadable_merged_file_keeps_its_partition_as_it_is(tree):
    """What a merged file covers is in its footer: unreadable, a part the ETL wrote again after the
    merge could not be told from a new one, so nothing of that partition is merged."""
    hf = hf_partition(tree)
    parts = sorted(hf.glob("part-*.parquet"))
    copy = {p: p.read_bytes() for p in parts[:2]}
    compact(tree)
    merged = next(hf.glob("part-*.parquet"))
    for p, data in copy.items():  # an ETL redo of the first two segments
        p.write_bytes(data)
    truncate_footer(merged)
    before = {p.name: p.read_bytes() for p in hf.glob("part-*.parquet")}
    report = compact(tree)
    assert report.unreadable.keys() == {str(merged)} and report.groups == 0
    assert {p.name: p.read_bytes() for p in hf.glob("part-*.parquet")} == before


def test_a_part_whose_data_is_unreadable_fails_only_its_merge(tree):
    hf = hf_partition(tree, "ETH-USDT")
    bad = sorted(hf.glob("part-*.parquet"))[5]
    corrupt_first_page(bad)
    with pytest.raises((pa.ArrowException, OSError)):
        pq.read_table(bad)
    before = {p.name: p.read_bytes() for p in hf.glob("part-*.parquet")}
    others = {p: partition_rows(p) for p in all_partitions(tree) if p != hf}

    report = compact(tree)  # the old merge raised out of the run here

    assert len(report.failed) == 1 and Path(report.failed[0][0]).parent == hf
    assert report.unreadable.keys() == {str(bad)}
    assert {p.name: p.read_bytes() for p in hf.glob("part-*.parquet")} == before  # every input kept
    assert not list(hf.glob(".*"))  # no temp or journal left behind
    for partition, rows in others.items():
        assert len(list(partition.glob("part-*.parquet"))) == 1, partition
        assert partition_rows(partition).equals(rows)


def test_the_command_does_the_rest_and_fails_the_run_with_the_files_named(tree, tmp_path):
    hf = hf_partition(tree)
    bad = sorted(hf.glob("part-*.parquet"))[0]
    truncate_footer(bad)
    readable = sum(len(list(p.glob("part-*.parquet"))) for p in all_partitions(tree)) - 1
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tree.data_dir), "host_id": "pi01",
                                      "compaction": {"target_file_mb": 1},
                                      "metrics": {"textfile_dir": str(tmp_path / "textfiles")},
                                      "logging": {"format": "json"}}))
    run = subprocess.run(fluxforge_cli("compact", "-c", str(config)), capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert f"UNREADABLE {bad}" in run.stderr and "Traceback" not in run.stderr
    assert '"event": "compaction_unreadable_part"' in run.stdout + run.stderr
    prom = (tmp_path / "textfiles" / "fluxforge_compact.prom").read_text()
    assert 'fluxforge_task_outcome{outcome="failure",task="compact"} 1.0' in prom, prom
    assert "fluxforge_compact_unreadable_files 1.0" in prom and "fluxforge_compact_failed_merges 0.0" in prom
    assert f"fluxforge_compact_files_merged {readable}.0" in prom, prom  # everything else was merged
    for partition in all_partitions(tree):
        files = sorted(partition.glob("part-*.parquet"))
        if partition == hf:  # the bad first part kept, the other 23 merged
            assert files[0] == bad and len(files) == 2 and len(covered_parts(files[1])) == 23
        else:
            assert len(files) == 1, partition
