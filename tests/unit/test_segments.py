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
