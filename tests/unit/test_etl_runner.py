"""The ETL state machine with a transparent engine double (tests/etl_support.LedgerEngine).

These check ordering, resets, continuity, recovery and failure handling of the
ETL itself; tests/integration/test_etl_*.py repeat the key properties with the
real feature kernels and real processes.
"""
import errno

import numpy as np
import pyarrow as pa
import pytest

from etl_support import tables_equal, LedgerEngine, read_tree, synthetic_market, tree_files, write_segments
from fluxforge.config import FeatureOptions
from fluxforge.etl.replay import find_segments, replay
from fluxforge.etl.runner import EtlRunner, RetryLater

OPTIONS = FeatureOptions(bar_durations=[1, 5])
GAPS = [("BTC/USDT", 33_000), ("ETH/USDT", 70_005)]


def make_runner(root):
    return EtlRunner(root / "segments", root / "features", root / "state", OPTIONS,
                     row_group_rows=1024, engine_class=LedgerEngine)


def run_all(root, tables, n):
    write_segments(root / "segments" / "ready", tables, n)
    outcomes = make_runner(root).run_once()
    assert all(o.state == "done" for o in outcomes)
    return outcomes


def assert_same_tree(a, b):
    for kind in ("hf", "bars"):
        ta, tb = read_tree(a, kind), read_tree(b, kind)
        assert ta.num_rows > 0
        assert tables_equal(ta, tb), kind


@pytest.fixture(scope="module")
def market():
    return synthetic_market(seconds=120, gaps=GAPS)


def test_thirty_segments_equal_one(tmp_path, market):
    run_all(tmp_path / "one", market, 1)
    run_all(tmp_path / "thirty", market, 30)
    assert_same_tree(tmp_path / "one/features", tmp_path / "thirty/features")
    hf = read_tree(tmp_path / "thirty/features")
    assert hf.schema.field("symbol").type == pa.string()
    assert set(hf.column("symbol").to_pylist()) == {"BTC-USDT", "ETH-USDT"}
    # every book became exactly one hf row (the double emits one per book): nothing lost or doubled,
    # except the newest reorder_window (5 s) of each symbol, carried in the checkpoint for the next segment
    expected = 0
    for sym in ("BTC/USDT", "ETH/USDT"):
        ts = {ch: market[ch].filter(pa.compute.equal(market[ch].column("symbol"), sym)).column("timestamp").to_numpy()
              for ch in ("orderbook", "trades")}
        newest = max(ts["orderbook"].max(), ts["trades"].max())
        expected += int((ts["orderbook"] < newest - 5000).sum())
    assert hf.num_rows == expected
    # each gap reset its own symbol once
    for sym, n in (("BTC-USDT", 1), ("ETH-USDT", 1)):
        rows = hf.filter(pa.compute.equal(hf.column("symbol"), sym))
        assert max(rows.column("resets").to_pylist()) == n


@pytest.mark.parametrize("lagging", ["orderbook", "trades"])
def test_thirty_equal_one_when_a_stream_lags(tmp_path, market, lagging):
    """A busy collector turns one stream into rows later than the other: 20 s of receive time
    here, four times the reorder window, so rows of one stream land segments later."""
    lagged = dict(market)
    t = market[lagging]
    recv = pa.compute.add(t.column("recv_ns"), 20_000_000_000)
    lagged[lagging] = t.set_column(t.schema.get_field_index("recv_ns"), "recv_ns", recv)
    run_all(tmp_path / "one", lagged, 1)
    run_all(tmp_path / "thirty", lagged, 30)
    assert_same_tree(tmp_path / "one/features", tmp_path / "thirty/features")


def test_untimed_books_do_not_move_the_watermark(tmp_path):
    tables = synthetic_market(symbols=("BTC/USDT",), seconds=40)
    books = tables["orderbook"]
    ts = books.column("timestamp").to_pylist()
    ts[50] = None  # a REST snapshot: no exchange time, receive time far in the future
    recv = books.column("recv_ns").to_pylist()
    recv[50] += 10**18
    books = books.set_column(2, "timestamp", pa.array(ts, pa.int64())).set_column(3, "recv_ns", pa.array(recv, pa.int64()))
    run_all(tmp_path / "one", {**tables, "orderbook": books}, 1)
    run_all(tmp_path / "four", {**tables, "orderbook": books}, 4)
    assert_same_tree(tmp_path / "one/features", tmp_path / "four/features")


def event_rows(rows) -> pa.Table:
    """An events table of reset rows: (symbol or None for the whole exchange, recv_ns, event)."""
    from fluxforge.bronze import schemas as bronze
    return pa.table({
        "exchange": ["binance"] * len(rows), "symbol": [r[0] for r in rows],
        "channel": [None if r[0] is None else "orderbook" for r in rows],
        "timestamp": [r[1] // 1_000_000 for r in rows], "recv_ns": [r[1] for r in rows],
        "event": [r[2] for r in rows], "reason": ["test"] * len(rows), "count": [None] * len(rows),
    }, schema=bronze.EVENTS)


def first_book_after(books: pa.Table, symbol: str, recv_ns: int) -> int:
    """Exchange time of the symbol's first book *with an exchange time* received at/after recv_ns."""
    sym = books.filter(pa.compute.equal(books.column("symbol"), symbol))
    ts = np.asarray(sym.column("timestamp").to_pylist(), dtype=object)
    recv = sym.column("recv_ns").to_numpy()
    ok = np.array([t is not None for t in ts]) & (recv >= recv_ns)
    assert ok.any()
    return int(ts[ok][np.argmin(recv[ok])])


def assert_reset_at(hf: pa.Table, symbol: str, first: int, before: int = 0):
    """Rows of `symbol` before `first` have `before` resets, rows from it on one more; both sets non-empty."""
    rows = hf.filter(pa.compute.equal(hf.column("symbol"), symbol))
    ts = rows.column("timestamp").cast(pa.int64()).to_numpy()
    resets = np.asarray(rows.column("resets"))
    assert (ts < first).sum() > 0 and (ts >= first).sum() > 0, (symbol, first)
    assert (resets[ts < first] == before).all(), symbol
    assert (resets[ts >= first] == before + 1).all(), symbol


def test_reset_lands_on_first_book_after_event(tmp_path):
    """A gap mid-stream resets its symbol at the first book received after it, and only that symbol;
    an exchange-wide (null-symbol) reconnect resets every symbol of the exchange at its own first
    book after it; a first book without exchange time (REST snapshot) is not the reset point.  The
    local clock runs 2 s ahead of the exchange's, so taking that book's receive time as its time
    would move the reset."""
    tables = synthetic_market(seconds=60)
    for ch in ("orderbook", "trades"):
        t = tables[ch]
        tables[ch] = t.set_column(3, "recv_ns", pa.compute.add(t.column("recv_ns"), 2_000_000_000))
    books = tables["orderbook"]
    t0 = 1_723_075_200_000 * 1_000_000
    gap_ns, reconnect_ns = t0 + 20_000_000_123, t0 + 40_000_000_456
    # the first ETH book received after the reconnect has no exchange time
    eth = np.flatnonzero((books.column("symbol").to_numpy(zero_copy_only=False) == "ETH/USDT")
                         & (books.column("recv_ns").to_numpy() >= reconnect_ns))
    ts = books.column("timestamp").to_pylist()
    ts[int(eth[0])] = None
    books = books.set_column(2, "timestamp", pa.array(ts, pa.int64()))
    tables = {**tables, "orderbook": books,
              "events": event_rows([("BTC/USDT", gap_ns, "gap"), (None, reconnect_ns, "reconnect")])}
    run_all(tmp_path / "one", tables, 1)
    run_all(tmp_path / "three", tables, 3)
    assert_same_tree(tmp_path / "one/features", tmp_path / "three/features")
    hf = read_tree(tmp_path / "three/features")
    btc_gap = first_book_after(books, "BTC/USDT", gap_ns)
    btc_rc = first_book_after(books, "BTC/USDT", reconnect_ns)
    eth_rc = first_book_after(books, "ETH/USDT", reconnect_ns)
    assert eth_rc == books.column("timestamp")[int(eth[1])].as_py()  # the untimed book was skipped
    assert_reset_at(hf.filter(pa.compute.less(hf.column("timestamp").cast(pa.int64()), btc_rc)), "BTC-USDT", btc_gap)
    assert_reset_at(hf.filter(pa.compute.greater_equal(hf.column("timestamp").cast(pa.int64()), btc_gap)),
                    "BTC-USDT", btc_rc, before=1)
    assert_reset_at(hf, "ETH-USDT", eth_rc)


def test_pending_reset_carries_into_next_segment(tmp_path):
    """An event after segment 1's last book resets at segment 2's first book; segment 2 is longer
    than the reorder window (5 s), so rows after the reset are written."""
    tables = synthetic_market(symbols=("BTC/USDT",), seconds=60)
    books = tables["orderbook"]
    recv = books.column("recv_ns").to_numpy()
    t0 = 1_723_075_200_000 * 1_000_000
    edge = t0 + 35_000_000_000  # write_segments' cut between the two segments (60 s + 10 s) / 2
    last1 = int(recv[recv < edge].max())
    event_ns = last1 + 1
    assert event_ns < edge
    tables = {**tables, "events": event_rows([("BTC/USDT", event_ns, "gap")])}
    segs = write_segments(tmp_path / "segments/ready", tables, 2, seconds=60)
    import pyarrow.parquet as pq
    assert pq.read_table(segs[0] / "events.parquet").num_rows == 1
    make_runner(tmp_path).run_once()
    first2 = int(pq.read_table(tmp_path / "segments/done" / segs[1].name / "orderbook.parquet")
                 .sort_by("recv_ns").column("timestamp")[0].as_py())
    assert first2 == first_book_after(books, "BTC/USDT", event_ns)
    assert_reset_at(read_tree(tmp_path / "features"), "BTC-USDT", first2)


def test_replay_equals_service(tmp_path, market):
    run_all(tmp_path, market, 8)
    summary = replay(find_segments([tmp_path / "segments"]), tmp_path / "replayed", OPTIONS, 1024,
                     engine_class=LedgerEngine)
    assert len(summary.done) == 8 and not summary.skipped
    a, b = tree_files(tmp_path / "features"), tree_files(tmp_path / "replayed")
    assert a.keys() == b.keys() and all(tables_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("crash_point", ["after_outputs", "after_checkpoint"])
def test_crash_in_processing_is_redone_exactly_once(tmp_path, market, crash_point, monkeypatch):
    run_all(tmp_path / "ref", market, 6)
    root = tmp_path / "crash"
    write_segments(root / "segments/ready", market, 6)
    runner = make_runner(root)
    runner.run_once(should_stop=lambda: runner.last is not None and runner.last.segment.endswith("000002"))
    seg = runner.claim_next()
    class Crash(BaseException):
        pass

    def crash(*a, **k):
        raise Crash()
    if crash_point == "after_outputs":
        monkeypatch.setattr(runner.checkpoints, "save", crash)
    else:
        monkeypatch.setattr(runner.store, "move", crash)
    with pytest.raises(Crash):
        runner.process_claimed(seg)
    monkeypatch.undo()
    assert seg.exists() and seg.parent.name == "processing"
    outcomes = make_runner(root).run_once()
    assert [o.state for o in outcomes] == ["done"] * 4
    assert_same_tree(tmp_path / "ref/features", root / "features")
    assert tree_files(tmp_path / "ref/features").keys() == tree_files(root / "features").keys()


def test_bad_segment_goes_to_failed_and_later_ones_continue(tmp_path, market):
    segs = write_segments(tmp_path / "segments/ready", market, 5)
    path = segs[2] / "orderbook.parquet"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    outcomes = make_runner(tmp_path).run_once()
    assert [o.state for o in outcomes] == ["done", "done", "failed", "done", "done"]
    failed = tmp_path / "segments/failed" / segs[2].name
    assert "orderbook.parquet: sha256" in (failed / "reason.txt").read_text()
    assert len(list((tmp_path / "segments/done").iterdir())) == 4
    hf = read_tree(tmp_path / "features")
    parts = {p.name for p in (tmp_path / "features").rglob("part-*.parquet")}
    assert not any(segs[2].name in p for p in parts)
    assert hf.num_rows > 0


def test_disk_full_keeps_segment_for_retry(tmp_path, market, monkeypatch):
    write_segments(tmp_path / "segments/ready", market, 2)
    runner = make_runner(tmp_path)
    seg = runner.claim_next()
    import fluxforge.etl.hive_writer as hw

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(hw.pq, "write_table", full)
    with pytest.raises(RetryLater):
        runner.process_claimed(seg)
    monkeypatch.undo()
    assert seg.exists() and not list((tmp_path / "features").rglob(".part-*"))
    assert [o.state for o in runner.run_once()] == ["done", "done"]


def test_changed_options_restart_state(tmp_path, market):
    run_all(tmp_path, market, 2)
    ck = (tmp_path / "state/etl/checkpoint.arrow")
    assert ck.exists()
    other = EtlRunner(tmp_path / "segments", tmp_path / "features", tmp_path / "state",
                      FeatureOptions(bar_durations=[1]), engine_class=LedgerEngine)
    assert other.bank.keys() == [] and other.checkpoint.last_segment is not None


def test_segment_spanning_midnight_splits_by_date(tmp_path):
    start = 1_723_075_200_000 - 30_000  # 2024-08-07T23:59:30Z
    tables = synthetic_market(symbols=("BTC/USDT",), seconds=60, start_ms=start)
    write_segments(tmp_path / "segments/ready", tables, 1, start_ms=start, seconds=60)
    make_runner(tmp_path).run_once()
    parts = sorted(p.relative_to(tmp_path / "features/hf").parent.as_posix()
                   for p in (tmp_path / "features/hf").rglob("part-*.parquet"))
    assert parts == ["exchange=binance/symbol=BTC-USDT/date=2024-08-07",
                     "exchange=binance/symbol=BTC-USDT/date=2024-08-08"]
    hf = read_tree(tmp_path / "features")
    days = hf.column("timestamp").cast(pa.int64()).to_numpy() // 86_400_000
    dates = hf.column("date").cast(pa.string()).to_pylist()
    assert all((d == "2024-08-07") == (day == 19942) for d, day in zip(dates, days))
