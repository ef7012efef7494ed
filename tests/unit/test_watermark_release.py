"""Rows before the reorder watermark are processed at once, not when the symbol's next trade comes.

Why this matters: the live path publishes a row when the engines process it, so a rule that
also waited for the symbol's next trade (to put trades first at equal times) added the gap
between two trades to the event-to-publish latency of every book row -- a quiet symbol's
rows waited up to 12 reorder windows.  The watermark already waited for both streams
(etl/engines.py), so the engine is told that everything before it is complete
(`complete_before`).  Real kernels, a market whose trades stop while its books go on.
"""
import pyarrow as pa
import pyarrow.compute as pc

from etl_support import T0_MS, synthetic_market
from live_support import same_rows
from fluxforge.config import FeatureOptions
from fluxforge.etl.engines import EngineBank
from fluxforge.etl.segment_feed import SegmentFeeder, pieces
from fluxforge.features.engine import FeatureEngine

OPTIONS = FeatureOptions(hf_emit_interval=1.0, bar_durations=[5])
REORDER_MS = 1000
TRADES_UNTIL_MS = 10_000  # the symbol trades for 10 s, then only its book moves (for 50 s)


def _market() -> dict[str, pa.Table]:
    m = synthetic_market(symbols=("BTC/USDT",), seconds=60.0, hz=10.0, trades_per_s=5.0)
    t = m["trades"]
    m["trades"] = t.filter(pc.less(t.column("timestamp"), T0_MS + TRADES_UNTIL_MS))
    return m


def _fed(m: dict[str, pa.Table]):
    """One segment through the ETL's feeder (watermark, engines) without finishing it."""
    bank = EngineBank(OPTIONS, reorder_ms=REORDER_MS)
    feeder = SegmentFeeder(bank, "seg")
    out = feeder.feed_chunk(pieces(m["orderbook"], 1_000_000), m["trades"], m["events"])
    return bank, out[("binance", "BTC/USDT")]


def test_books_after_the_last_trade_are_released_by_the_watermark():
    m = _market()
    _, out = _fed(m)
    hf = pa.concat_tables(out.hf)
    last_book = m["orderbook"].column("timestamp").to_numpy().max()
    released = hf.column("timestamp").cast(pa.int64()).to_numpy().max()
    # the trade stream went silent 50 s ago: the watermark is its 12-window cap behind the
    # books, and every hf row before it is out -- not only those before the last trade
    assert released >= last_book - 12 * REORDER_MS - 1000, (released - T0_MS, last_book - T0_MS)
    assert released > T0_MS + TRADES_UNTIL_MS + 30_000


def test_released_rows_equal_the_one_shot_engine():
    m = _market()
    _, out = _fed(m)
    live = pa.concat_tables(out.hf)
    one = FeatureEngine(OPTIONS)
    whole = pa.concat_tables([one.process(m["orderbook"], m["trades"]).hf, one.flush().hf])
    assert live.num_rows > 0
    assert same_rows(live.to_pylist(), whole.slice(0, live.num_rows).to_pylist())


def test_complete_before_processes_what_the_engine_would_hold_back():
    m = _market()
    held, told = FeatureEngine(OPTIONS), FeatureEngine(OPTIONS)
    until = T0_MS + 40_000
    books = m["orderbook"].filter(pc.less(m["orderbook"].column("timestamp"), until))
    a = held.process(books, m["trades"]).hf
    b = told.process(books, m["trades"], complete_before=until).hf
    assert a.column("timestamp").cast(pa.int64()).to_numpy().max() < T0_MS + TRADES_UNTIL_MS
    assert b.column("timestamp").cast(pa.int64()).to_numpy().max() > until - 2000
    assert same_rows(b.slice(0, a.num_rows).to_pylist(), a.to_pylist())
