"""Rows before the reorder watermark are processed at once, not when the symbol's next trade comes.

Why this matters: the live path publishes a row when the engines process it, so a rule that
also waited for the symbol's next trade (to put trades first at equal times) added the gap
between two trades to the event-to-publish latency of every book row -- a quiet symbol's
rows waited up to 12 reorder windows.  The watermark already waited for both streams
(etl/engines.py), so the engine is told that everything before it is complete
(`complete_before`).  Real kernels, a market whose trades stop while its books go on.

The same holds for the watermark itself when the live path feeds a flush at a time: a
trade stream that is quiet (nothing received since its last trade while the books go
on) has passed the time the books were received for since, so it does not hold the
books back for the gap; a trade stream that lags (its rows arrive later than the books
of the same time) still does.
"""
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from etl_support import T0_MS, synthetic_market
from live_support import flushes, same_rows
from fluxforge.config import FeatureOptions
from fluxforge.etl.engines import EngineBank, FeatureOutput
from fluxforge.etl.segment_feed import HeldOutputs, SegmentFeeder, pieces
from fluxforge.features import table_blocks
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
    return bank, HeldOutputs(out)[("binance", "BTC/USDT")]


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


FLUSH_NS = 250_000_000


def _fed_by_flush(m: dict[str, pa.Table]):
    """Feed flush by flush like the live path; per flush: (its end, newest book time so far, newest hf row out)."""
    bank = EngineBank(OPTIONS, reorder_ms=REORDER_MS)
    feeder = SegmentFeeder(bank, "seg")
    seen, released, trail = None, None, []
    for end, rows in flushes(m, FLUSH_NS):
        out = feeder.feed_chunk(pieces(rows["orderbook"], 1_000_000), rows["trades"], rows["events"])
        if rows["orderbook"].num_rows:
            seen = max(seen or 0, pc.max(rows["orderbook"].column("timestamp")).as_py())
        for table in HeldOutputs(out)[("binance", "BTC/USDT")].hf if ("binance", "BTC/USDT") in out else []:
            released = max(released or 0, pc.max(table.column("timestamp").cast(pa.int64())).as_py())
        trail.append((end, seen, released))
    return feeder, trail


def _one_chunk(m: dict[str, pa.Table]) -> pa.Table:
    """The hf rows of the segment fed as one chunk (the segment job without a live log)."""
    feeder = SegmentFeeder(EngineBank(OPTIONS, reorder_ms=REORDER_MS), "seg")
    feeder.feed_chunk(pieces(m["orderbook"], 1_000_000), m["trades"], m["events"])
    feeder.finish()
    return pa.concat_tables(feeder.outputs[("binance", "BTC/USDT")].hf)


def test_a_quiet_trade_stream_does_not_hold_the_books_back_flush_by_flush():
    m = _market()
    feeder, trail = _fed_by_flush(m)
    quiet = [(seen, released) for _, seen, released in trail if seen and seen > T0_MS + TRADES_UNTIL_MS + 5_000]
    assert len(quiet) > 100
    # every flush releases the hf rows up to the watermark (newest book - window) on the 1-s grid,
    # as far as the last book before it; the old rule held them 12 windows back for as long as
    # the symbol did not trade
    book_gap = int(np.diff(m["orderbook"].column("timestamp").to_numpy()).max())
    lag = [seen - released for seen, released in quiet]
    assert max(lag) <= REORDER_MS + 1000 + book_gap, (max(lag), book_gap)
    assert max(lag) < 3 * REORDER_MS
    feeder.finish()
    live = pa.concat_tables(feeder.outputs[("binance", "BTC/USDT")].hf)
    assert feeder.totals()["late_dropped"] == 0
    assert same_rows(live.to_pylist(), _one_chunk(m).to_pylist())


def _delayed(m: dict[str, pa.Table], after_ms: int, delay_ms: int) -> dict[str, pa.Table]:
    """The trades from `after_ms` on received `delay_ms` later (a lagging trade stream), rows in receive order."""
    t = m["trades"]
    late = t.column("timestamp").to_numpy() >= after_ms
    recv = t.column("recv_ns").to_numpy() + np.where(late, delay_ms * 1_000_000, 0)
    t = t.set_column(t.schema.get_field_index("recv_ns"), "recv_ns", pa.array(recv)).sort_by("recv_ns")
    return {**m, "trades": t}


def test_a_lagging_trade_stream_still_holds_the_watermark():
    # trading throughout, every trade received 3 windows after its time: the books wait for them
    m = synthetic_market(symbols=("BTC/USDT",), seconds=30.0, hz=10.0, trades_per_s=5.0)
    m = _delayed(m, T0_MS, 3 * REORDER_MS)
    feeder, _ = _fed_by_flush(m)
    feeder.finish()
    assert feeder.totals()["late_dropped"] == 0
    live = pa.concat_tables(feeder.outputs[("binance", "BTC/USDT")].hf)
    assert same_rows(live.to_pylist(), _one_chunk(m).to_pylist())


def test_a_trade_delay_that_grows_past_the_window_drops_trades_as_late():
    # the trade stream's delay jumps from ~0 to 3 windows: the watermark had followed the books
    # received meanwhile, so trades older than it are late -- dropped and counted, the documented
    # price of a shorter window (docs/live.md); the books are not dropped
    m = synthetic_market(symbols=("BTC/USDT",), seconds=30.0, hz=10.0, trades_per_s=5.0)
    m = _delayed(m, T0_MS + 10_000, 3 * REORDER_MS)
    feeder, _ = _fed_by_flush(m)
    feeder.finish()
    totals = feeder.totals()
    assert 0 < totals["late_dropped"] <= 3 * 5 * 3  # at most the trades of the 3 s the delay grew by
    carried = feeder.bank.state(("binance", "BTC/USDT")).carry.books  # after the watermark: the next segment's
    assert totals["books"] + carried.num_rows == m["orderbook"].num_rows


def test_the_trade_clock_survives_a_checkpoint():
    # the quiet market cut into two segments with the bank checkpointed between them: the second
    # segment's watermark goes on from the trade clock, not from the 12-window cap
    m = _market()
    cut_ns = int(m["orderbook"].column("recv_ns").to_numpy()[150])  # ~15 s: after the last trade
    def part(first: bool) -> dict[str, pa.Table]:
        return {n: t.filter(pc.less(t.column("recv_ns"), cut_ns) if first else pc.greater_equal(t.column("recv_ns"), cut_ns))
                for n, t in m.items()}
    bank = EngineBank(OPTIONS, reorder_ms=REORDER_MS)
    first = SegmentFeeder(bank, "seg-1")
    for _, rows in flushes(part(True), FLUSH_NS):
        first.feed_chunk(pieces(rows["orderbook"], 1_000_000), rows["trades"], rows["events"])
    first.finish()
    carry = bank.state(("binance", "BTC/USDT")).carry
    assert carry.trade_clock is not None and carry.book_recv > carry.trade_clock[1]
    restored = EngineBank(OPTIONS, reorder_ms=REORDER_MS)
    restored.restore(bank.snapshot())
    again = restored.state(("binance", "BTC/USDT")).carry
    assert (again.trade_clock, again.book_recv) == (carry.trade_clock, carry.book_recv)
    second = SegmentFeeder(restored, "seg-2")
    released, newest = [], 0
    for _, rows in list(flushes(part(False), FLUSH_NS))[:8]:  # its first 2 s
        out = second.feed_chunk(pieces(rows["orderbook"], 1_000_000), rows["trades"], rows["events"])
        released += [pc.max(t.column("timestamp").cast(pa.int64())).as_py()
                     for t in table_blocks.tables(out.get(("binance", "BTC/USDT"), FeatureOutput()).hf)]
        newest = max(newest, pc.max(rows["orderbook"].column("timestamp")).as_py() or 0)
    assert released and newest - max(released) < 3 * REORDER_MS, (newest - max(released or [0]))


@pytest.mark.realdata
@pytest.mark.parametrize("reorder_ms", [1000, 5000])
def test_real_capture_flush_by_flush_drops_nothing_and_equals_one_chunk(shared_capture, reorder_ms):
    # the real Binance capture (its diffs and trades with their real receive times) as 1-s flushes:
    # the quiet-stream rule drops no row as late and every hf row and bar, at full stored depth,
    # equals the segment fed as one chunk
    from tests.reference.binance_capture import load, load_messages
    path = shared_capture / "btcusdt_20240808.gz"
    m = {"orderbook": load_messages(path), "trades": load(path)[1], "events": _market()["events"].slice(0, 0)}
    options = FeatureOptions(hf_emit_interval=1.0, bar_durations=[5, 60])

    def fed(chunks) -> SegmentFeeder:
        feeder = SegmentFeeder(EngineBank(options, reorder_ms=reorder_ms), "seg")
        for rows in chunks:
            feeder.feed_chunk(pieces(rows["orderbook"], 1_000_000), rows["trades"], rows["events"])
        feeder.finish()
        return feeder

    flushed = fed(rows for _, rows in flushes(m, 1_000_000_000))
    whole = fed([m])
    assert flushed.totals()["late_dropped"] == whole.totals()["late_dropped"] == 0
    a, b = flushed.outputs[("binance", "BTC/USDT")], whole.outputs[("binance", "BTC/USDT")]
    for got, want in [(a.hf, b.hf)] + [(a.bars[d], b.bars[d]) for d in (5, 60)]:
        got, want = pa.concat_tables(got).to_pylist(), pa.concat_tables(want).to_pylist()
        assert len(got) == len(want) > 0 and same_rows(got, want)


def test_trades_resent_after_a_reconnect_are_not_late():
    # the trade socket closes at 10 s (the collector records the reconnect as it sees the close),
    # the exchange resends the missed trades on resubscribe (received at 13.5 s): from the event on
    # the trade stream is not quiet but down, so the watermark waits for them instead of following
    # the books.  (A socket that stalls silently is only seen when its keepalive fails: trades it
    # missed before that are late unless the window covers the stall.)
    m = synthetic_market(symbols=("BTC/USDT",), seconds=30.0, hz=10.0, trades_per_s=5.0)
    t = m["trades"]
    ts = t.column("timestamp").to_numpy()
    missed = (ts >= T0_MS + 10_000) & (ts < T0_MS + 13_500)
    recv = np.where(missed, (T0_MS + 13_500) * 1_000_000 + np.arange(len(ts)), t.column("recv_ns").to_numpy())
    recv = np.where(~missed & (ts >= T0_MS + 13_500), np.maximum(recv, (T0_MS + 13_501) * 1_000_000), recv)
    t = t.set_column(t.schema.get_field_index("recv_ns"), "recv_ns", pa.array(recv)).sort_by("recv_ns")
    event = pa.table({"exchange": ["binance"], "symbol": ["BTC/USDT"], "channel": ["trades"],
                      "timestamp": [T0_MS + 10_050], "recv_ns": [(T0_MS + 10_050) * 1_000_000],
                      "event": ["reconnect"], "reason": ["test: socket closed"], "count": [None]},
                     schema=m["events"].schema)
    m = {**m, "trades": t, "events": event}
    feeder, _ = _fed_by_flush(m)
    feeder.finish()
    assert missed.sum() > 5 and feeder.totals()["late_dropped"] == 0
    live = pa.concat_tables(feeder.outputs[("binance", "BTC/USDT")].hf)
    assert same_rows(live.to_pylist(), _one_chunk(m).to_pylist())
