"""A book snapshot without exchange time (Binance's REST snapshot) that a segment ends with.

The reader gives such a row the time of the next book row of its symbol, but only within
its segment: a segment that rotated right after the snapshot (before the first diff) used
to leave it null, the engine dropped it, and the book stayed unknown for the whole stream
(no hf rows at all).  Now the engine holds it -- through a checkpoint too -- until the next
timed book row, and the result equals the one-chunk run.
"""
from __future__ import annotations

import pyarrow as pa

from etl_support import tables_equal
from fluxforge.features.engine import FeatureEngine, concat_results

T0 = 1_723_161_600_000


def _rows(rows):
    cols = {k: [] for k in ("timestamp", "kind", "nonce", "prev_nonce", "bid_px", "bid_sz", "ask_px", "ask_sz")}
    for ts, kind, nonce, prev, bids, asks in rows:
        for k, v in (("timestamp", ts), ("kind", kind), ("nonce", nonce), ("prev_nonce", prev),
                     ("bid_px", [p for p, _ in bids]), ("bid_sz", [q for _, q in bids]),
                     ("ask_px", [p for p, _ in asks]), ("ask_sz", [q for _, q in asks])):
            cols[k].append(v)
    return pa.table(cols, schema=pa.schema([("timestamp", pa.int64()), ("kind", pa.string()), ("nonce", pa.int64()),
                                            ("prev_nonce", pa.int64())] +
                                           [(c, pa.list_(pa.float64())) for c in ("bid_px", "bid_sz", "ask_px", "ask_sz")]))


SNAPSHOT = (None, "snapshot", 100, None, [(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0), (102.0, 2.0)])
DELTAS = [(T0 + 100 * i, "delta", 101 + i, 100 + i, [(100.0, 1.0 + i)], [(101.0, 0.5 + i)]) for i in range(20)]


def _run(chunks, checkpoint_between=False):
    eng = FeatureEngine(hf_emit_interval=0)
    out = []
    for chunk in chunks:
        out.append(eng.process(_rows(chunk)))
        if checkpoint_between:
            eng = FeatureEngine.from_state(eng.get_state(), eng.options)
    out.append(eng.flush())
    return concat_results(out).hf, eng


def test_a_snapshot_ending_a_segment_waits_for_the_next_book_row():
    whole, _ = _run([[SNAPSHOT] + DELTAS])
    assert whole.num_rows == 21                      # the snapshot (at the first diff's time) and every diff
    for checkpoint in (False, True):
        split, eng = _run([[SNAPSHOT], DELTAS[:7], DELTAS[7:]], checkpoint_between=checkpoint)
        assert tables_equal(split, whole)
        assert eng.book_synced and eng.stats()["null_timestamp_dropped"] == 0


def test_an_untimed_row_never_followed_by_a_timed_one_is_dropped_and_counted():
    hf, eng = _run([DELTAS[:0] + [SNAPSHOT]])
    assert hf.num_rows == 0 and eng.stats()["null_timestamp_dropped"] == 1
