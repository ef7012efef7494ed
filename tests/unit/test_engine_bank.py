"""The engine bank restored without building its engines (etl/engines.py `EngineBank.restore`).

Why it matters: at each rotation the live path goes on with the engines that finished the
segment, and the ETL's own bank -- only needed if it computes a segment itself -- takes their
snapshot unbuilt.  So a bank restored unchecked must be that snapshot exactly: `snapshot()`
gives the bytes back, the late-drop counts the metrics read come from them, and the next
segment fed through it, through a bank restored and built at once, and through the engines
that simply went on are the same rows.  A corrupt snapshot still fails: at once when checked
(a checkpoint read at start-up), at the symbol's first use when not.
"""
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from etl_support import synthetic_market
from live_support import flushes, row_keys
from fluxforge.config import FeatureOptions
from fluxforge.etl.engines import EngineBank
from fluxforge.etl.segment_feed import HeldOutputs, SegmentFeeder, pieces
from fluxforge.features.engine import FeatureEngine

OPTIONS = FeatureOptions(hf_emit_interval=1.0, bar_durations=[5])
REORDER_MS = 1000
FLUSH_NS = 1_000_000_000
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


def _halves() -> tuple[dict, dict]:
    m = synthetic_market(symbols=SYMBOLS, seconds=40.0, hz=10.0, trades_per_s=5.0)
    cut = int(pc.min(m["orderbook"].column("recv_ns")).as_py()) + 20 * FLUSH_NS
    def half(t: pa.Table, first: bool) -> pa.Table:
        recv = t.column("recv_ns")
        return t.filter(pc.less(recv, cut) if first else pc.greater_equal(recv, cut))
    return tuple({n: half(t, first) for n, t in m.items()} for first in (True, False))


def _segment(bank: EngineBank, name: str, rows: dict) -> dict:
    """A segment fed flush by flush, as the live path does, and finished: its rows per (symbol, product)
    (live_support.row_keys: every value's repr, NaN equal to NaN)."""
    feeder = SegmentFeeder(bank, name)
    for _, flush in flushes(rows, FLUSH_NS):
        feeder.feed_chunk(pieces(flush["orderbook"], 1_000_000), flush["trades"], flush["events"])
    feeder.finish()
    out = HeldOutputs(feeder.held)
    return {(key, "hf"): row_keys(pa.concat_tables(out[key].hf)) for key in out} | \
           {(key, d): row_keys(pa.concat_tables(t)) for key in out for d, t in out[key].bars.items()}


def test_an_unbuilt_restore_is_the_snapshot_and_feeds_the_same_rows():
    first, second = _halves()
    went_on = EngineBank(OPTIONS, reorder_ms=REORDER_MS)
    _segment(went_on, "seg-1", first)
    snap = went_on.snapshot()
    lazy, built = went_on.restored(snap), went_on.restored({})
    built.restore(snap)
    assert lazy.symbols == {} and lazy.keys() == sorted(snap) == built.keys() and len(snap) == len(SYMBOLS)
    assert lazy.snapshot() == snap  # untouched symbols: their bytes as stored
    assert lazy.late_dropped() == went_on.late_dropped() == built.late_dropped()
    assert lazy.symbols == {}  # the counts came from the bytes, nothing was built for them
    rows = [_segment(bank, "seg-2", second) for bank in (went_on, lazy, built)]
    assert rows[0] and rows[0] == rows[1] == rows[2]
    assert sorted(lazy.symbols) == sorted(snap)  # built as the segment reached each symbol


def test_a_corrupt_snapshot_fails_when_checked_at_once_else_at_first_use():
    bank = EngineBank(OPTIONS, reorder_ms=REORDER_MS)
    _segment(bank, "seg-1", _halves()[0])
    snap = bank.snapshot()
    key = sorted(snap)[1]
    bad = dict(snap) | {key: (b"{not json", snap[key][1])}
    with pytest.raises(ValueError, match="not a feature-engine checkpoint"):
        bank.restored({}).restore(bad)
    lazy = bank.restored(bad)
    lazy.state(sorted(snap)[0])  # the others load
    for _ in range(2):  # a failed build keeps the bytes: never a fresh engine in their place
        with pytest.raises(ValueError, match="not a feature-engine checkpoint"):
            lazy.state(key)
    assert lazy.snapshot()[key] == bad[key]
    with pytest.raises(ValueError, match="not a feature-engine checkpoint"):
        lazy.late_dropped()
    assert FeatureEngine.late_dropped_in(snap[key][0]) == bank.late_dropped()[key]
