"""Segment names order by host then seq (never the wall clock); state changes are single renames."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from fluxforge.bronze.segments import SegmentId, SegmentStore


def test_segment_id_roundtrip_and_order():
    a = SegmentId.new("pi01", 2, datetime(2024, 8, 8, 0, 0, 5, tzinfo=timezone.utc))
    b = SegmentId.new("pi01", 10, datetime(2024, 8, 8, 0, 0, 5, tzinfo=timezone.utc))
    c = SegmentId.new("pi01", 1, datetime(2024, 8, 8, 0, 1, 0, tzinfo=timezone.utc))  # clock stepped back
    assert a.name == "seg-pi01-20240808T000005Z-000002"
    assert SegmentId.parse(a.name) == a
    assert sorted([b, a, c]) == [c, a, b]
    assert c.precedes(a) and not a.precedes(c)
    assert not SegmentId.new("pi02", 1).precedes(b)  # other hosts are not ordered against each other
    with pytest.raises(ValueError):
        SegmentId.parse("seg-bad")


def test_store_moves_and_fail_keeps_data(tmp_path):
    store = SegmentStore(tmp_path).ensure()
    seg = store.path("active", SegmentId.new("h", 1))
    seg.mkdir()
    (seg / "trades.parquet").write_bytes(b"x")
    ready = store.move(seg, "ready")
    assert store.list("ready") == [ready] and not seg.exists()
    failed = store.fail(ready, "corrupt footer")
    assert (failed / "reason.txt").read_text() == "corrupt footer\n"
    assert (failed / "trades.parquet").read_bytes() == b"x"
    assert store.next_seq() == 2


def test_state_directory_on_another_file_system_is_refused_at_start(tmp_path, mount_tmpfs, capsys):
    """Issue 17 item 20: a symlinked done/ on another file system would fail every rename with EXDEV."""
    import structlog

    from fluxforge.cli import main
    from fluxforge.config import ConfigError

    saved = structlog.get_config()  # the command configures logging onto this test's stderr
    other = mount_tmpfs("4m")
    data = tmp_path / "data"
    (data / "segments").mkdir(parents=True)
    (other / "done").mkdir()
    (data / "segments" / "done").symlink_to(other / "done")
    with pytest.raises(ConfigError, match="another file system"):
        SegmentStore(data / "segments").ensure()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data_dir: {data}\nhost_id: t\n")
    try:
        assert main(["etl", "--once", "--config", str(cfg)]) == 78
    finally:
        structlog.configure(**saved)
    err = capsys.readouterr().err
    assert "done" in err and "one file system" in err
