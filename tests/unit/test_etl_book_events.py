"""The ETL reports what the book rebuild saw: a snapshot that contradicts the rebuilt book
(and a lost delta) in a segment become one `book_rebuild_events` log event with the counts."""
from __future__ import annotations

import pyarrow as pa
from structlog.testing import capture_logs

from etl_support import as_book_messages, synthetic_market, write_segments
from fluxforge.config import FeatureOptions
from fluxforge.etl.runner import EtlRunner


def test_mismatch_and_gap_are_logged_per_segment(tmp_path):
    market = synthetic_market(symbols=("BTC/USDT",), seconds=20)
    books = as_book_messages(market["orderbook"], snapshot_every=50).to_pylist()
    snaps = [i for i, r in enumerate(books) if r["kind"] == "snapshot"]
    books[snaps[1]]["bid_sz"][0] += 1.0                  # the exchange's snapshot disagrees
    lost = next(i for i in range(snaps[2] + 1, len(books)) if books[i]["kind"] == "delta")
    del books[lost]                                        # a delta never arrived: a gap
    tables = dict(market, orderbook=pa.Table.from_pylist(books, schema=market["orderbook"].schema))
    write_segments(tmp_path / "segments/ready", tables, 1, seconds=20)
    runner = EtlRunner(tmp_path / "segments", tmp_path / "features", tmp_path / "state", FeatureOptions())
    with capture_logs() as logs:
        assert [o.state for o in runner.run_once()] == ["done"]
    events = [e for e in logs if e["event"] == "book_rebuild_events"]
    assert len(events) == 1
    assert events[0]["book_mismatches"] == 1 and events[0]["book_gaps"] == 1 and events[0]["symbol"] == "BTC/USDT"
