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


def test_reset_lands_on_first_book_after_event(tmp_path):
    tables = synthetic_market(symbols=("BTC/USDT",), seconds=30, gaps=[("BTC/USDT", 29_999)])
    # the gap is after nearly every book: with 3 segments its reset is pending across no segment
    run_all(tmp_path, tables, 3)
    hf = read_tree(tmp_path / "features")
    ts = hf.column("timestamp").cast(pa.int64()).to_numpy()
    resets = np.asarray(hf.column("resets"))
    books = tables["orderbook"]
    recv = books.column("recv_ns").to_numpy()
    after = recv >= (1_723_075_200_000 + 29_999) * 1_000_000
    if after.any():
        first = books.column("timestamp").to_numpy()[after][np.argmin(recv[after])]
        assert (resets[ts >= first] == 1).all() and (resets[ts < first] == 0).all()
    else:
        assert (resets == 0).all()


def test_pending_reset_carries_into_next_segment(tmp_path):
    tables = synthetic_market(symbols=("BTC/USDT",), seconds=20)
    write_segments(tmp_path / "segments/ready", tables, 2, seconds=20)
    seg1, seg2 = sorted((tmp_path / "segments/ready").iterdir())
    # a gap at the very end of segment 1 (after its last book) resets at segment 2's first book
    last_recv = int(max(tables["orderbook"].column("recv_ns").to_numpy()))
    from etl_support import write_segment
    from fluxforge.bronze.segments import SegmentId
    import pyarrow.parquet as pq
    part = {ch: pq.read_table(seg1 / f"{ch}.parquet") for ch in ("orderbook", "trades")}
    import shutil
    shutil.rmtree(seg1)
    ev = pa.table({"exchange": ["binance"], "symbol": [None], "channel": [None], "timestamp": [0],
                   "recv_ns": [int(part["orderbook"].column("recv_ns").to_numpy().max()) + 1],
                   "event": ["reconnect"], "reason": ["test"], "count": [None]},
                  schema=pq.read_schema(seg2 / "events.parquet"))
    part["events"] = ev
    write_segment(seg1.parent, SegmentId.parse(seg1.name), part)
    runner = make_runner(tmp_path)
    runner.run_once()
    assert last_recv > 0
    hf = read_tree(tmp_path / "features")
    first2 = pq.read_table(seg2.parent.parent / "done" / seg2.name / "orderbook.parquet").column("timestamp").to_numpy().min()
    ts = hf.column("timestamp").cast(pa.int64()).to_numpy()
    resets = np.asarray(hf.column("resets"))
    assert (resets[ts >= first2] == 1).all() and (resets[ts < first2] == 0).all()


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
    assert other.bank.symbols == {} and other.checkpoint.last_segment is not None


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
