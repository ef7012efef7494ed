"""An import killed between its steps is finished (or redone) by the next run, never duplicated.

The on-disk states a crash can leave are built from a real import's own output:
(a) segments announced in the ledger but still in staging (killed during the renames
into ready/), (b) segments built in staging but never announced (killed before the
ledger write).  The next run must end with each hour exactly once in ready/.
"""
import json
import shutil
from datetime import datetime, timezone

import pyarrow.parquet as pq

from daedalus_writer import candle_and_bidask_records, expected_bronze, synthetic_records, write_ndjson
from fluxforge.bronze.segments import SegmentStore
from fluxforge.migrate.daedalus_import import STAGING, import_daedalus
from fluxforge.migrate.import_ledger import LEDGER

START = datetime(2025, 7, 1, 12, 30, tzinfo=timezone.utc)
RECORDS = synthetic_records(START, minutes=60) + candle_and_bidask_records(START, minutes=60)


def _staged_state(tmp_path, announced: bool):
    old = tmp_path / "old"
    write_ndjson(old, RECORDS)
    data = tmp_path / "data"
    first = import_daedalus([old], data, show_progress=False)
    assert len(first.segments) == 2
    store = SegmentStore(data / "segments")
    staged = SegmentStore(data / "segments" / STAGING / "segments").ensure()
    # the second hour had not been renamed into ready/ yet
    shutil.move(str(store.path("ready", first.segments[1])), str(staged.path("ready", first.segments[1])))
    ledger_path = data / "state" / LEDGER
    doc = json.loads(ledger_path.read_text())
    if announced:
        doc["pending"] = {"files": doc["files"], "segments": first.segments, "host": "daedalus", "last_hour": None}
    else:  # never announced: the first hour too was only staged
        shutil.move(str(store.path("ready", first.segments[0])), str(staged.path("ready", first.segments[0])))
    doc["files"] = {}
    doc["hosts"] = {}
    ledger_path.write_text(json.dumps(doc))
    return old, data, first.segments


def test_announced_segments_are_moved_by_the_next_run(tmp_path):
    old, data, names = _staged_state(tmp_path, announced=True)
    again = import_daedalus([old], data, show_progress=False)
    assert any(names[1] in w for w in again.warnings)
    assert again.segments == [] and len(again.files_already_imported) == 2
    assert [p.name for p in SegmentStore(data / "segments").list("ready")] == names
    assert not (data / "segments" / STAGING).exists()


def test_unannounced_staging_is_discarded_and_the_files_imported_once(tmp_path):
    old, data, names = _staged_state(tmp_path, announced=False)
    again = import_daedalus([old], data, show_progress=False)
    assert len(again.segments) == 2 and again.files_already_imported == []
    ready = SegmentStore(data / "segments").list("ready")
    assert [p.name for p in ready] == again.segments  # the staged leftovers are gone, each hour once
    for channel, rows in expected_bronze(RECORDS).items():  # every row once, candles and bid/asks too
        assert sum(pq.read_metadata(p / f"{channel}.parquet").num_rows for p in ready) == len(rows) > 0, channel
    assert not (data / "segments" / STAGING).exists()
