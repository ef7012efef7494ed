"""The live path against the segment job, on journals written flush by flush with late rows.

The collector's own ActiveSegment writes the journals; after each flush the LiveFollower
steps (real kernels); then the segment is finished like a rotation and the segment job
processes it.  Trades reach the "collector" seconds after their books, further behind
than the reorder window allows, so the live engines drop some of them as late -- which
ones depends on the chunks.  Every published row must still be the Parquet row.
"""
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from etl_support import T0_MS, synthetic_market
from live_support import flushes, landed, row_keys
from ticker_support import synthetic_tickers
from fluxforge.bronze.active_segment import ActiveSegment
from fluxforge.bronze.finish import finish_segment
from fluxforge.bronze.schemas import CHANNEL_SCHEMAS
from fluxforge.config import FeatureOptions, TradeOptions
from fluxforge.etl import chunk_log
from fluxforge.etl.live_follow import LiveFollower
from fluxforge.etl.runner import EtlRunner

OPTIONS = FeatureOptions(hf_emit_interval=1.0, bar_durations=[5])
TRADES_LATE_NS = 3_000_000_000  # trades arrive 3 s after their exchange time
FLUSH_NS = 500_000_000
TRADES = TradeOptions(bar_durations=[1, 5], per_trade=True)
MAX_GAP_MS = 3_000  # etl.max_gap_seconds: BTC/USDT has a 6 s hole in books and trades (HOLE)
HOLE = (T0_MS + 25_000, T0_MS + 31_000)


def _holed(t: pa.Table) -> pa.Table:
    ts = t.column("timestamp").to_numpy()
    btc = np.asarray(t.column("symbol").to_pylist()) == "BTC/USDT"
    return t.filter(pa.array(~(btc & (ts >= HOLE[0]) & (ts < HOLE[1]))))


def _market() -> dict[str, pa.Table]:
    m = synthetic_market(seconds=40.0, hz=10.0, trades_per_s=5.0, gaps=[("BTC/USDT", 20_000)])
    m = dict(m, orderbook=_holed(m["orderbook"]), trades=_holed(m["trades"]))
    t = m["trades"]
    late = pa.array(t.column("recv_ns").to_numpy() + TRADES_LATE_NS)
    m["trades"] = t.set_column(t.schema.get_field_index("recv_ns"), "recv_ns", late).sort_by("recv_ns")
    m["ticker"] = synthetic_tickers(m, 40.0, hz=2.0)  # up to 3 s late as well
    return m


def _runner(root) -> EtlRunner:
    runner = EtlRunner(root / "segments", root / "features", root / "state", OPTIONS, row_group_rows=1024,
                       reorder_window=0.1, trade_options=TRADES, max_gap_ms=MAX_GAP_MS)
    runner.keep_outputs = True
    return runner


def _flushes(m: dict[str, pa.Table]):
    """Rows of each flush interval (by receive time) from the market's start, channel by channel."""
    return (rows for _, rows in flushes(m, FLUSH_NS, T0_MS * 1_000_000))


def _write(seg: ActiveSegment, flush: dict[str, pa.Table]) -> None:
    for ch, t in flush.items():
        if t.num_rows:
            seg.write(ch, t.cast(CHANNEL_SCHEMAS[ch]).combine_chunks().to_batches()[0])


def _by_key(pubs, replay: bool) -> dict:
    """Rows published per (product, exchange, symbol) (a publication holds a product's rows of any
    number of symbols), in publish order."""
    out: dict = {}
    for p in pubs:
        if p.replay == replay and p.table.num_rows:
            streams = zip(p.table.column("exchange").to_pylist(), p.table.column("symbol").to_pylist())
            for stream, row in zip(streams, row_keys(p.table.drop_columns(["exchange", "symbol"]))):
                out.setdefault((p.product, *stream), []).append(row)
    return out


def _run(tmp_path, restart_after: int | None = None, handover: str = "live finish", watch=None):
    """watch: called with the runner at start; what it returns is told the segment's outcome."""
    root = tmp_path / "data"
    runner = _runner(root)
    watcher = watch(runner) if watch is not None else None
    follower = LiveFollower(runner)
    seg = ActiveSegment.create(runner.store, "testhost", seq=1,
                               when=datetime.fromtimestamp(T0_MS / 1000, tz=timezone.utc))
    pubs, live_steps = [], 0
    for i, flush in enumerate(_flushes(_market())):
        _write(seg, flush)
        got = follower.step()
        live_steps += sum(p.table.num_rows for p in got)
        pubs += got
        if restart_after is not None and i == restart_after:  # a new ETL process: same checkpoint, new engines
            runner = _runner(root)
            follower = LiveFollower(runner)
    if handover == "journals closed":  # as the collector rotates: the next segment, then the close
        ActiveSegment.create(runner.store, "testhost", seq=2,
                             when=datetime.fromtimestamp(T0_MS / 1000 + 40, tz=timezone.utc))
        seg.close()
        assert not follower.quiet()
        pubs += follower.step()  # finished from its journals, before its Parquet files exist
        assert follower.finished is not None and follower.current is None
        assert follower.step() == [] and follower.current.seg_dir.name != seg.path.name  # on to the next
    seg.close()
    finish_segment(seg.path, runner.store)
    if handover == "live finish":  # the live path sees the rotation first and finishes the segment itself
        got = follower.step()
        assert follower.finished is not None
        pubs += got
    claimed = runner.claim_next()
    ho, got = follower.handover(claimed) if handover != "none" else (None, [])
    pubs += got
    outcome = runner.process_claimed(claimed, ho)
    assert outcome.state == "done", outcome.reason
    if ho is not None:  # the segment job took the live path's finished feeder: it only wrote the parts;
        # its own engines are that snapshot, not built unless it computes a segment itself (the live path
        # goes on with the feeder's: "journals closed" began the next segment with them)
        assert runner.bank is not ho.feeder.bank and runner.bank.symbols == {} and runner.bank.snapshot() == ho.state
        if handover == "journals closed":
            assert follower.current.feeder.bank is ho.feeder.bank and follower.finished.bank_taken
    if watcher is not None:
        watcher.segment_done(outcome)
    pubs += follower.segment_done(outcome)
    return root, runner, outcome, pubs, live_steps


# "live finish": the live path finishes the rotated segment, the segment job only writes it;
# "journals closed": it does so as soon as the collector has begun the next segment;
# "handover": the segment job claims it first, the live path then finishes it (`handover`);
# "none": it feeds the logged chunks again from the checkpoint (after a restart).
@pytest.mark.parametrize("handover", ["live finish", "journals closed", "handover", "none"])
def test_live_rows_equal_the_parquet_rows_despite_late_rows(tmp_path, handover):
    root, runner, outcome, pubs, live_steps = _run(tmp_path, handover=handover)
    assert outcome.result.late_dropped > 0  # the case where the chunks matter
    truth = {k: row_keys(t) for k, t in landed(root / "features").items()}
    assert {k[0] for k in truth} >= {"hf", "bars/interval=5s", "trade_bars/interval=1s", "trades", "ticker"}
    assert _by_key(pubs, replay=False) == truth
    assert not _by_key(pubs, replay=True)
    assert live_steps > 0.5 * sum(len(v) for v in truth.values())  # most rows before the segment ended
    assert (root / "segments" / "done" / outcome.segment / chunk_log.SEGMENT_FILE).is_file()
    # the checkpoint (the live path's snapshot at its finish when handed over) is the engines' state
    assert runner.checkpoint.symbols == runner.bank.snapshot()
    assert runner.checkpoints.load().symbols == runner.bank.snapshot()
    assert not list((root / "state" / "etl" / "live").glob("*.chunks"))
    # `fluxforge replay` of the segment follows the log it carries: replay == live
    assert {k: row_keys(t) for k, t in _replayed(root, tmp_path / "replay").items()} == truth
    # ... and that includes the time-gap reset: no return across BTC's hole, live or replayed
    hf = landed(root / "features")["hf", "binance", "BTC/USDT"]
    ts = hf.column("timestamp").cast(pa.int64()).to_numpy()
    after = int(np.flatnonzero(ts >= HOLE[1])[0])
    assert np.isnan(hf.column("log_return_step")[after].as_py()) and ts[after - 1] < HOLE[0]
    assert np.isfinite(hf.column("log_return_step").to_numpy(zero_copy_only=False)[after + 1:after + 4]).any()


@pytest.mark.parametrize("handover", ["live finish", "journals closed", "handover", "none"])
def test_the_late_rows_metric_counts_the_rows_the_segment_dropped(tmp_path, handover):
    """The ETL's metrics are made at start-up; a handover gives the runner the live path's bank.
    The per-symbol late-drop counters must come from that bank, not the one the runner began with."""
    from fluxforge.config import parse_config
    from fluxforge.observe.etl_metrics import EtlMetrics

    cfg = parse_config({"data_dir": str(tmp_path / "data"), "host_id": "t"})
    made = []
    _, _, outcome, _, _ = _run(tmp_path, handover=handover,
                               watch=lambda runner: made.append(EtlMetrics(cfg, lambda: runner.bank, lambda: None)) or made[0])
    late = made[0].late_dropped
    assert set(late) == {("binance", "BTC/USDT"), ("binance", "ETH/USDT")}
    assert sum(late.values()) == outcome.result.late_dropped > 0


def _replayed(root, out):
    from fluxforge.etl.engines import EngineBank
    from fluxforge.etl.segment_job import run_segment
    seg_dir = next((root / "segments" / "done").iterdir())
    bank = EngineBank(OPTIONS, reorder_ms=100, trade_options=TRADES, max_gap_ms=MAX_GAP_MS)
    run_segment(seg_dir, bank, out / "features", 1024)
    return landed(out / "features")


def test_a_damaged_line_ends_the_chunk_log_there_instead_of_failing_the_segment(tmp_path):
    """Bit rot in a finished segment's live log: the chunks before the damaged line are fed as
    logged, the rest after them -- the segment job does not raise (the whole file's UTF-8 decode
    did, and the ETL moved a sound segment to failed/)."""
    root, _runner, outcome, _pubs, _ = _run(tmp_path)
    log = root / "segments" / "done" / outcome.segment / chunk_log.SEGMENT_FILE
    lines = log.read_bytes().splitlines(keepends=True)
    k = len(lines) // 2
    log.write_bytes(b"".join(lines[:k]) + b"\xff\xfe\x00 not a chunk\n" + b"".join(lines[k + 1:]))
    assert k > 1 and len(chunk_log.read(log)) == k
    replayed = _replayed(root, tmp_path / "other")  # (its rows may differ from the landed ones past line k)
    assert {k for k in replayed if k[0] == "hf"} == {k for k in landed(root / "features") if k[0] == "hf"} != set()


@pytest.mark.parametrize("lines, expected", [
    ([b'{"events": 0, "orderbook": 5, "ticker": 1, "trades": 2}'], False),
    ([b'{"events": 0, "orderbook": 5, "trades": 2}'], False),   # a log from before ticker features
    ([b'{"events": 0, "orderbook": 5, "ticker": 1, "trades": 2}', b'{"finished": true}'], True),
    ([b'{"events": 0, "orderbook": 5, "ticker": 1, "trades": 2}', b'{"finishee": true}'], True),  # one bit
    ([b'{"events": 0, "orderbook": 5, "tickew": 1, "trades": 2}'], True),  # damage in a chunk: may hide a mark
    ([b'\xff\xfe{"finished": true}'[:8]], True),
    ([b'[1, 2]'], True),
])
def test_a_line_that_is_neither_a_chunk_nor_readable_counts_as_the_finished_mark(tmp_path, lines, expected):
    log = tmp_path / "seg.chunks"
    log.write_bytes(b"".join(line + b"\n" for line in lines))
    assert chunk_log.finished(log) is expected
    # the last append torn (no newline): a crash mid-write, before the rows it would cover went out
    log.write_bytes(b"".join(line + b"\n" for line in lines[:-1]) + lines[-1])
    assert chunk_log.finished(log) is (b'"finished"' in lines[-1])


def test_after_a_restart_rows_published_before_are_replays(tmp_path):
    root, runner, outcome, pubs, _ = _run(tmp_path, restart_after=30)
    truth = {k: row_keys(t) for k, t in landed(root / "features").items()}
    first = _by_key(pubs, replay=False)
    again = _by_key(pubs, replay=True)
    assert again, "the new process re-published the logged chunks"
    for key, rows in truth.items():
        sent = first.get(key, [])
        assert sorted(set(sent)) == sorted(sent) and set(sent) | set(again.get(key, [])) == set(rows), key
        assert set(again.get(key, [])) <= set(sent), key  # a replay repeats what was published


def test_a_segment_fed_without_its_log_would_differ(tmp_path):
    """Guards the test above: without the chunk log the segment job gives other rows here."""
    root, runner, outcome, pubs, _ = _run(tmp_path)
    truth = {k: row_keys(t) for k, t in landed(root / "features").items()}
    (root / "segments" / "done" / outcome.segment / chunk_log.SEGMENT_FILE).unlink()
    assert {k: row_keys(t) for k, t in _replayed(root, tmp_path / "other").items()} != truth


@pytest.fixture(autouse=True)
def _quiet_numpy():
    with np.errstate(all="ignore"):
        yield


def test_status_line_shows_the_event_to_publish_latency(tmp_path):
    import time

    from fluxforge.config import parse_config
    from fluxforge.etl.live_follow import Publication
    from fluxforge.etl.service import EtlService

    svc = EtlService(parse_config({"data_dir": str(tmp_path / "data"), "host_id": "t",
                                   "metrics": {"enabled": False}}))
    svc.live = LiveFollower(svc.runner)
    assert "live no live rows yet" in svc.status_line()
    now = time.time()
    hf = pa.table({"timestamp": pa.array([int((now - 1.5) * 1000)] * 3, pa.timestamp("ms", tz="UTC"))})
    svc.live.note_published([Publication("hf", hf), Publication("hf", hf, replay=True)], now)
    assert "live event-to-publish p50 1.50s p99 1.50s" in svc.status_line()
    assert svc.live.counters.rows == 3 and svc.live.counters.replayed_rows == 3


def test_a_restart_replays_the_last_segment_unless_all_of_it_reached_the_hub(tmp_path):
    """A kill between the checkpoint and handing the segment's last rows to the hub: the next
    process sends all of that segment again, flagged -- and nothing once it was all sent."""
    root, runner, outcome, pubs, _ = _run(tmp_path)
    truth = {k: row_keys(t) for k, t in landed(root / "features").items()}
    again = LiveFollower(_runner(root)).restart_replay()
    assert all(p.replay for p in again) and _by_key(again, replay=True) == truth
    assert LiveFollower(_runner(root)).restart_replay() == []  # marked as sent by the first replay
    # a damaged marker (bit rot) sends the segment again rather than failing the live path at every start
    (root / "state" / "etl" / "live" / "published").write_bytes(b"\xff\xfe\x00")
    assert _by_key(LiveFollower(_runner(root)).restart_replay(), replay=True) == truth


def test_an_error_in_the_live_path_is_counted_and_never_stops_the_segment_pipeline(tmp_path):
    """An active segment whose journal cannot be read: the live path fails on it (logged and
    counted, retried from the checkpoint, then left to the segment job) while the ETL goes on
    processing ready segments."""
    import asyncio

    from etl_support import write_segments
    from fluxforge.bronze.segments import SegmentId
    from fluxforge.config import parse_config
    from fluxforge.etl.live_follow import MAX_FAILURES
    from fluxforge.etl.service import EtlService

    data = tmp_path / "data"
    cfg = parse_config({"data_dir": str(data), "host_id": "testhost", "metrics": {"enabled": False},
                        "etl": {"poll_interval": 0.05, "live": {"enabled": True, "poll_interval": 0.01},
                                "features": {"hf_emit_interval": 1.0, "bar_durations": [5]}}})
    active = data / "segments" / "active" / SegmentId.new("testhost", 5, datetime(2024, 8, 8, 1, tzinfo=timezone.utc)).name
    active.mkdir(parents=True)
    from fluxforge.bronze.journal import schema_header
    for ch in chunk_log.CHANNELS:  # every journal's header is of another channel's schema
        (active / f"{ch}.arrows").write_bytes(schema_header(CHANNEL_SCHEMAS["ticker"]))
    svc = EtlService(cfg)

    async def body():
        task = asyncio.create_task(svc.run())
        for _ in range(3000):
            if svc.live is not None and svc.live.counters.errors >= MAX_FAILURES and svc.processed >= 2:
                break
            if svc.processed == 0 and not list((data / "segments" / "ready").glob("seg-*")):
                write_segments(data / "segments" / "ready", synthetic_market(seconds=20.0), 2)
            await asyncio.sleep(0.01)
        svc.request_stop()
        return await asyncio.wait_for(task, 60)

    assert asyncio.run(body()) == 0
    assert svc.processed == 2 and svc.failed == 0
    assert svc.live.counters.errors == MAX_FAILURES  # then left alone, not retried in a loop
    assert f"{MAX_FAILURES} live error(s)" in svc.status_line()
    assert landed(data / "features")


def test_with_live_off_the_etl_follows_nothing_and_writes_no_chunk_log(tmp_path):
    """etl.live.enabled defaults to false (opt-in: it costs several times the ETL's CPU,
    docs/live.md): the running ETL then neither follows the active segment nor writes chunk
    logs nor binds a socket -- the segment is processed as by the ETL without live features."""
    import asyncio

    from fluxforge.bronze.segments import SegmentStore
    from fluxforge.config import parse_config
    from fluxforge.etl.service import EtlService

    data = tmp_path / "data"
    cfg = parse_config({"data_dir": str(data), "host_id": "testhost", "metrics": {"enabled": False},
                        "etl": {"poll_interval": 0.05, "features": {"hf_emit_interval": 1.0, "bar_durations": [5]}}})
    assert cfg.etl.live.enabled is False
    store = SegmentStore(data / "segments")
    svc = EtlService(cfg)
    assert svc.hub is None

    async def body():
        task = asyncio.create_task(svc.run())
        seg = ActiveSegment.create(store, "testhost", seq=1, when=datetime.fromtimestamp(T0_MS / 1000, tz=timezone.utc))
        for flush in _flushes(_market()):  # journals flushed while the ETL runs
            _write(seg, flush)
            await asyncio.sleep(0)
        seg.close()
        finish_segment(seg.path, store)
        for _ in range(6000):  # wait on the real condition: the segment processed
            if svc.processed or task.done():
                break
            await asyncio.sleep(0.01)
        svc.request_stop()
        return await asyncio.wait_for(task, 60)

    assert asyncio.run(body()) == 0
    assert svc.processed == 1 and svc.failed == 0 and svc.live is None
    (done,) = store.list("done")
    assert not (done / chunk_log.SEGMENT_FILE).exists()
    assert not (data / "state" / "etl" / "live").exists()
    assert not (data / "state" / "live.sock").exists()
    assert "live" not in svc.status_line()
    assert {k[0] for k in landed(data / "features")} >= {"hf", "bars/interval=5s"}


@pytest.mark.parametrize("gone_at", ["trades", "events", "ticker"])
@pytest.mark.parametrize("followed_flushes", [39, 0])
def test_a_rotation_between_reading_two_journals_loses_no_batch(tmp_path, gone_at, followed_flushes):
    """The collector finishes the segment (journals deleted, directory renamed) after the live
    path read the order book journal's new batches and before it reads the next journal: those
    batches were read but not fed.  They must be fed when the live path finishes the segment
    from its Parquet files -- the published rows still equal the Parquet rows, none flagged.
    followed_flushes=0: the whole segment is in that one read (stop 22's CI failure: a short last
    segment; the old code published nothing live, then all of it as replays)."""
    from fluxforge.bronze.journal import JournalTail

    root = tmp_path / "data"
    runner = _runner(root)
    follower = LiveFollower(runner)
    seg = ActiveSegment.create(runner.store, "testhost", seq=1,
                               when=datetime.fromtimestamp(T0_MS / 1000, tz=timezone.utc))
    flushes = list(_flushes(_market()))[:40]  # the segment ends mid-stream: its last flush has books
    pubs = follower.step()  # following it
    assert follower.current is not None
    for flush in flushes[:followed_flushes]:
        _write(seg, flush)
        pubs += follower.step()
    for flush in flushes[followed_flushes:]:
        _write(seg, flush)
    tail, books = follower.current.tails[gone_at], follower.current.tails["orderbook"]
    books_before = books.rows
    real_read = JournalTail.read

    def read_after_rotation(self, *a, **k):
        if self is tail:  # the order book journal was read: now the collector finishes the segment
            assert books.rows > books_before  # (the case: new book batches were read)
            seg.close()
            finish_segment(seg.path, runner.store)
        return real_read(self, *a, **k)

    JournalTail.read = read_after_rotation
    try:
        pubs += follower.step()
    finally:
        JournalTail.read = real_read
    pubs += follower.step()  # the live path finishes the rotated segment
    assert follower.finished is not None
    claimed = runner.claim_next()
    ho, got = follower.handover(claimed)
    assert got == []  # (finished already)
    outcome = runner.process_claimed(claimed, ho)
    assert outcome.state == "done", outcome.reason
    truth = {k: row_keys(t) for k, t in landed(root / "features").items()}
    assert _by_key(pubs, replay=False) == truth  # the live path finished it: every row, as it landed
    assert follower.segment_done(outcome) == []  # (the segment job only wrote them)


def test_quiet_exactly_when_a_step_would_find_nothing(tmp_path):
    """The service skips the step while `quiet()`: true only between flushes of a followed segment."""
    runner = _runner(tmp_path / "data")
    follower = LiveFollower(runner)
    assert not follower.quiet()  # following nothing yet: the step looks for a segment
    seg = ActiveSegment.create(runner.store, "testhost", seq=1,
                               when=datetime.fromtimestamp(T0_MS / 1000, tz=timezone.utc))
    flushes = _flushes(_market())
    assert follower.step() == []  # begins following the segment and reads what it holds (schema headers)
    assert follower.current is not None and follower.quiet()
    assert follower.step() == [] and follower.quiet()
    for _ in range(3):
        _write(seg, next(flushes))  # a flush: the journals grew
        assert not follower.quiet()
        follower.step()
        assert follower.quiet()  # every complete batch read
    seg.close()
    finish_segment(seg.path, runner.store)
    assert not follower.quiet()  # rotated: the journals are gone, the step finishes the segment
    follower.step()
    assert follower.finished is not None


def test_beginning_a_segment_reads_what_it_already_holds(tmp_path):
    """After a rotation the collector has written flushes to the next segment before the live path
    begins it: the step that begins it reads them too, instead of waiting for the next flush mark
    (that wait was a second of latency for every row due around each rotation)."""
    runner = _runner(tmp_path / "data")
    follower = LiveFollower(runner)
    seg = ActiveSegment.create(runner.store, "testhost", seq=1,
                               when=datetime.fromtimestamp(T0_MS / 1000, tz=timezone.utc))
    flushes = _flushes(_market())
    for _ in range(3):
        _write(seg, next(flushes))
    follower.step()
    assert follower.current is not None and follower.counters.chunks == 1 and follower.quiet()
    seg.close()


def test_a_live_finish_on_other_rows_than_the_parquet_files_hold_is_not_taken(tmp_path):
    """The live path finished a segment from its closed journals; the segment job takes that result
    only if its Parquet files hold exactly the rows fed, else it computes the segment again -- and
    the live path then follows the next segment from the job's checkpoint, not its own finish."""
    runner = _runner(tmp_path / "data")
    follower = LiveFollower(runner)
    seg = ActiveSegment.create(runner.store, "testhost", seq=1,
                               when=datetime.fromtimestamp(T0_MS / 1000, tz=timezone.utc))
    for flush in list(_flushes(_market()))[:20]:
        _write(seg, flush)
        follower.step()
    ActiveSegment.create(runner.store, "testhost", seq=2,
                         when=datetime.fromtimestamp(T0_MS / 1000 + 20, tz=timezone.utc))
    seg.close()
    follower.step()
    assert follower.finished is not None
    follower.finished.handover.rows["trades"] -= 1  # as if it had missed the last trade row
    follower.step()
    assert follower.current is not None  # following the next segment from the live finish's state
    finish_segment(seg.path, runner.store)
    claimed = runner.claim_next()
    ho, _ = follower.handover(claimed)
    assert ho is not None
    outcome = runner.process_claimed(claimed, ho)
    assert outcome.state == "done", outcome.reason
    assert runner.bank is not ho.feeder.bank  # computed again from the checkpoint
    assert outcome.result.handover_refused
    follower.segment_done(outcome)
    assert follower.current is None and follower.finished is None  # not on from the state it refused
    follower.step()
    assert follower.current.checkpoint == outcome.segment  # the next one, from the job's checkpoint
    root = tmp_path / "data"  # ... and what landed is what its logged chunks give from the checkpoint
    assert {k: row_keys(t) for k, t in landed(root / "features").items()} == \
        {k: row_keys(t) for k, t in _replayed(root, tmp_path / "again").items()}


@pytest.mark.parametrize("damage", [None, "flipped", "unreadable"])
def test_a_restart_after_finishing_from_the_journals_publishes_that_segment_as_replays(tmp_path, damage):
    """The live path finished a segment from its closed journals and the ETL restarted before the
    collector had written the segment out: the new process must not follow it again (its last rows
    would go out a second time unflagged) -- the segment job sends all of it as replays, then the
    live path follows the next segment from the checkpoint.  Also when bit rot damaged the
    `finished` mark (before, that segment was followed again and its last rows sent unflagged)."""
    root = tmp_path / "data"
    runner = _runner(root)
    follower = LiveFollower(runner)
    seg = ActiveSegment.create(runner.store, "testhost", seq=1,
                               when=datetime.fromtimestamp(T0_MS / 1000, tz=timezone.utc))
    flushes = list(_flushes(_market()))
    for flush in flushes[:20]:
        _write(seg, flush)
        follower.step()
    _write(seg, flushes[20])  # the collector's last flush to it, then the rotation
    nxt = ActiveSegment.create(runner.store, "testhost", seq=2,
                               when=datetime.fromtimestamp(T0_MS / 1000 + 20, tz=timezone.utc))
    seg.close()
    last = follower.step()
    assert follower.finished is not None and last  # its last rows went to the hub
    if damage:
        log = chunk_log.state_path(runner.state_dir, seg.path.name)
        mark = log.read_bytes().splitlines(keepends=True)[-1]
        assert b'"finished"' in mark
        bad = bytes(b ^ 0x04 for b in mark[:-1]) if damage == "flipped" else b"\xff\xfe not a chunk"
        log.write_bytes(log.read_bytes()[:-len(mark)] + bad + b"\n")
    runner = _runner(root)  # the ETL restarts; the collector has not finished the old segment yet
    follower = LiveFollower(runner)
    assert follower.step() == [] and follower.current is None
    finish_segment(seg.path, runner.store)
    claimed = runner.claim_next()
    ho, got = follower.handover(claimed)
    assert ho is None and got == []
    outcome = runner.process_claimed(claimed, ho)
    assert outcome.state == "done", outcome.reason
    again = follower.segment_done(outcome)
    truth = {k: row_keys(t) for k, t in landed(root / "features").items()}
    assert _by_key(again, replay=True) == truth and not _by_key(again, replay=False)
    _write(nxt, flushes[21])
    follower.step()
    assert follower.current is not None and follower.current.seg_dir.name == nxt.path.name


def test_a_restart_seeds_the_replay_ring_with_the_recent_landed_rows_it_will_not_send_again(tmp_path):
    """The rows of the segments in Parquet within replay_minutes, oldest first, flagged replay; the
    last segment too once all of it reached the hub, else restart_replay sends it -- never both --
    and none of a segment not committed (back in ready/ for the segment job)."""
    from etl_support import write_segments
    from fluxforge.etl.live_seed import recent_parts

    root = tmp_path / "data"
    runner = _runner(root)
    write_segments(runner.store.dir("ready"), _market(), 4, seconds=40.0)
    assert [o.state for o in runner.run_once()] == ["done"] * 4
    segments = [p.name for p in runner.store.list("done")]
    truth = {k: row_keys(t) for k, t in landed(root / "features").items()}
    end_ms = T0_MS + 60_000  # after the market's last row

    def rows(pubs):
        assert all(p.replay for p in pubs)
        return _by_key(pubs, replay=True)

    follower = LiveFollower(_runner(root))
    seeded, again = follower.recent_landed(60, now_ms=end_ms), follower.restart_replay()
    assert rows(seeded) and rows(again)
    both = rows(seeded + again)  # seeded rows first, then the last segment's: each row once, in order
    assert both == truth
    assert rows(seeded) == {k: v for k, v in rows(recent_parts(root / "features", {segments[-1]}, 0, end_ms)).items()}
    # once the last segment reached the hub: all of it is seeded, nothing sent again
    follower = LiveFollower(_runner(root))
    assert follower.restart_replay() == [] and rows(follower.recent_landed(60, now_ms=end_ms)) == truth
    # the window: only rows at or after now - minutes (a part of the segments' rows)
    pubs = follower.recent_landed(0.25, now_ms=T0_MS + 30_000)
    recent = rows(pubs)
    assert recent and min(p.table.column("timestamp").cast(pa.int64()).to_numpy().min() for p in pubs) >= T0_MS + 15_000
    assert sum(map(len, recent.values())) < sum(map(len, truth.values()))
    assert all(rs == truth[k][-len(rs):] for k, rs in recent.items())  # each stream's newest rows
    # a segment moved back to ready/ (processed again next) is not seeded: its rows will be published
    (root / "segments" / "done" / segments[-1]).rename(root / "segments" / "ready" / segments[-1])
    assert rows(LiveFollower(_runner(root)).recent_landed(60, now_ms=end_ms)) == rows(
        recent_parts(root / "features", {segments[-1]}, 0, end_ms))


def test_the_seeding_reads_files_compaction_merged_and_each_hosts_newest_files(tmp_path):
    """A partition compaction merged (the day before, with a long replay_minutes) is seeded like its
    parts were; and files of two hosts in one tree (a renamed host) are walked per host: the old
    host's segments, with nothing recent, must not end the walk before the new host's are read."""
    from datetime import date

    from etl_support import write_segments
    from fluxforge.etl.live_seed import recent_parts
    from fluxforge.maintenance.compaction import compaction_metadata, iter_partitions, merge_group, plan_partition

    root = tmp_path / "data"
    runner = _runner(root)
    market = _market()
    cut = (T0_MS + 20_000) * 1_000_000  # the host was renamed 20 s in: zzold before, aanew after
    for host, keep, start_ms, seq in (("zzold", lambda r: r < cut, T0_MS, 1), ("aanew", lambda r: r >= cut, T0_MS + 20_000, 1)):
        part = {ch: t.filter(pa.array(keep(t.column("recv_ns").to_numpy()))) for ch, t in market.items()}
        write_segments(runner.store.dir("ready"), part, 3, host=host, start_ms=start_ms, seconds=14.0, first_seq=seq)
        assert all(o.state == "done" for o in runner.run_once())
    # each stream in time order (landed() reads the files in path order: aanew's before zzold's)
    truth = {k: row_keys(t.take(pc.sort_indices(t, [("timestamp", "ascending")])))  # (a stable sort)
             for k, t in landed(root / "features").items()}
    end_ms = T0_MS + 60_000

    def rows(pubs):
        assert all(p.replay for p in pubs)
        return _by_key(pubs, replay=True)

    whole = rows(recent_parts(root / "features", set(), 0, end_ms))
    assert whole == truth
    recent = rows(recent_parts(root / "features", set(), T0_MS + 30_000, end_ms))  # aanew's rows only
    assert recent and all(rs == truth[k][-len(rs):] for k, rs in recent.items())
    # compaction merges every partition (closed as if it were the next year): the same rows are seeded
    merged, inputs = 0, {}
    for partition, _ in iter_partitions(root / "features", date(2100, 1, 1)):
        for group in plan_partition(partition, 1 << 30):
            inputs.update({p: p.read_bytes() for p in group.inputs})
            merge_group(group, 1024)
            merged += compaction_metadata(group.output) is not None
    assert merged and not list((root / "features").rglob("part-seg-aanew-*-000002.parquet"))
    assert rows(recent_parts(root / "features", set(), 0, end_ms)) == whole
    # compaction stopped between its rename and unlinking the inputs: they are not seeded twice
    for path, data in inputs.items():
        path.write_bytes(data)
    assert rows(recent_parts(root / "features", set(), 0, end_ms)) == whole
    assert rows(recent_parts(root / "features", set(), T0_MS + 30_000, end_ms)) == recent


def test_the_next_segment_waits_for_the_rows_the_segment_job_publishes_of_the_one_before(tmp_path):
    """A segment the live path did not follow (it finished while the ETL was down) is processed by
    the segment job without the service's lock; its outcome is counted -- its rows published --
    only once the lock is free again.  If the live path took the lock first and began the next
    segment, that segment's rows went out before the older segment's: a subscriber replaying the
    ring then dropped the older rows as repeats (a CI run lost 8 ticker rows so).  The live path
    waits for `segment_done` of every segment the job committed; each stream's rows go out in time
    order."""
    root = tmp_path / "data"
    runner = _runner(root)
    follower = LiveFollower(runner)
    at = lambda s: datetime.fromtimestamp(T0_MS / 1000 + s, tz=timezone.utc)  # noqa: E731
    seg = ActiveSegment.create(runner.store, "testhost", seq=1, when=at(0))
    flushes = list(_flushes(_market()))
    for flush in flushes[:20]:
        _write(seg, flush)
    nxt = ActiveSegment.create(runner.store, "testhost", seq=2, when=at(20))
    seg.close()
    finish_segment(seg.path, runner.store)  # the ETL was down: nothing of it was followed
    for flush in flushes[20:30]:
        _write(nxt, flush)
    claimed = runner.claim_next()
    ho, pubs = follower.handover(claimed)
    assert ho is None and pubs == []
    outcome = runner.process_claimed(claimed, ho)  # (the service runs this without its lock)
    assert outcome.state == "done", outcome.reason
    assert follower.step() == [] and follower.current is None  # the live loop got the lock first: it waits
    published = follower.segment_done(outcome)  # the outcome counted: the job's rows of segment 1
    published += follower.step()  # now segment 2, from segment 1's end
    assert follower.current is not None and follower.current.seg_dir.name == nxt.path.name
    times: dict = {}
    for p in published:
        ms = p.table.column("timestamp").cast(pa.int64()).to_pylist()
        for stream, t in zip(zip(p.table.column("exchange").to_pylist(), p.table.column("symbol").to_pylist()), ms):
            times.setdefault((p.product, *stream), []).append(t)
    assert times and all(ts == sorted(ts) for ts in times.values()), times
    first = {k for k, ts in times.items() if ts[0] < T0_MS + 20_000}
    assert first  # segment 1's rows are among them, ahead of segment 2's
