"""Segment order is the per-host sequence (never the wall clock); older-than-checkpoint segments
are refused with a reason; late rows and redelivered trades are counted (issue 17, items 6 and 22)."""
import shutil
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc

from etl_support import T0_MS, LedgerEngine, read_tree, synthetic_market, tables_equal, write_segments
from fluxforge.bronze.segments import SegmentId, SegmentStore
from fluxforge.config import Config, FeatureOptions
from fluxforge.etl.checkpoint import CheckpointStore
from fluxforge.etl.runner import OLDER_THAN_CHECKPOINT, EtlRunner
from fluxforge.observe.status import etl_counters

OPTIONS = FeatureOptions(bar_durations=[1, 5])


def runner(root, engine_class=LedgerEngine):
    return EtlRunner(root / "segments", root / "features", root / "state", OPTIONS,
                     row_group_rows=1024, engine_class=engine_class)


def same_tree(a, b):
    for kind in ("hf", "bars"):
        ta, tb = read_tree(a, kind), read_tree(b, kind)
        assert ta.num_rows > 0 and tables_equal(ta, tb), kind


def test_clock_step_back_keeps_sequence_order(tmp_path):
    """The clock stepped back an hour between segments 2 and 3: names sort wrongly by time."""
    market = synthetic_market(seconds=60)
    write_segments(tmp_path / "ref/segments/ready", market, 4, seconds=60)
    assert all(o.state == "done" for o in runner(tmp_path / "ref").run_once())
    segs = write_segments(tmp_path / "step/segments/ready", market, 4, seconds=60)
    for seg in segs[2:]:
        sid = SegmentId.parse(seg.name)
        stepped = SegmentId.new(sid.host, sid.seq, sid.start_datetime - timedelta(hours=1))
        seg.rename(seg.with_name(stepped.name))
    outcomes = runner(tmp_path / "step").run_once()
    assert [SegmentId.parse(o.segment).seq for o in outcomes] == [1, 2, 3, 4]
    assert all(o.state == "done" for o in outcomes)
    same_tree(tmp_path / "ref/features", tmp_path / "step/features")


def test_segment_older_than_checkpoint_goes_to_failed_not_into_nothing(tmp_path):
    """The runbook's 'mv a fixed failed/ segment back to ready/' (or a restore of old bronze)."""
    market = synthetic_market(seconds=60)
    segs = write_segments(tmp_path / "segments/ready", market, 3, seconds=60)
    runner(tmp_path).run_once()
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "features").rglob("*.parquet")}
    old = tmp_path / "segments/done" / segs[1].name
    shutil.move(old, tmp_path / "segments/ready" / segs[1].name)
    outcomes = runner(tmp_path).run_once()
    assert [(o.segment, o.state) for o in outcomes] == [(segs[1].name, "failed")]
    reason = (tmp_path / "segments/failed" / segs[1].name / "reason.txt").read_text()
    assert OLDER_THAN_CHECKPOINT in reason and segs[2].name in reason
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "features").rglob("*.parquet")}
    assert after == before  # its parts were not rewritten (the ETL had nothing to add)
    assert CheckpointStore(tmp_path / "state").load().last_segment == segs[2].name


def test_sequence_never_restarts_after_every_segment_is_deleted(tmp_path):
    store = SegmentStore(tmp_path).ensure()
    from fluxforge.bronze.active_segment import ActiveSegment
    seg = ActiveSegment.create(store, "pi01")
    seg.close()
    assert SegmentId.parse(seg.path.name).seq == 1
    shutil.rmtree(seg.path)  # retention freed everything
    assert store.next_seq() == 2


def test_late_rows_are_counted_and_shown_in_status(tmp_path):
    """Rows of a newer segment that are older than what was processed: dropped, but counted."""
    market = synthetic_market(symbols=("BTC/USDT",), seconds=60)
    write_segments(tmp_path / "segments/ready", market, 2, seconds=60)
    # a third segment (next seq) repeating the first 20 s of exchange time: all of it is late
    cut = (T0_MS + 20_000) * 1_000_000
    first = {ch: t.filter(pc.less(t.column("recv_ns"), pa.scalar(cut, pa.int64()))) for ch, t in market.items()}
    write_segments(tmp_path / "segments/ready", first, 1, seconds=60, first_seq=3)
    outcomes = runner(tmp_path, engine_class=None).run_once()
    assert [o.state for o in outcomes] == ["done"] * 3
    late = outcomes[2].result.late_dropped
    assert late == first["orderbook"].num_rows  # its trades are repeats of seen ids: dropped as such
    assert outcomes[2].result.duplicate_trades == first["trades"].num_rows
    assert outcomes[0].result.late_dropped == 0
    cfg = Config.model_validate({"data_dir": str(tmp_path), "exchanges": [
        {"name": "binance", "symbols": ["BTC/USDT"]}]})
    counters = etl_counters(cfg)
    assert counters["late_dropped"] == late and counters["last_late_segment"] == outcomes[2].segment


def _redelivered(market, every=7, delay_s=3):
    """Every `every`-th trade sent again `delay_s` later (same id and exchange time), as after a reconnect."""
    trades = market["trades"]
    again = trades.take(pa.array(range(0, trades.num_rows, every)))
    again = again.set_column(again.schema.get_field_index("recv_ns"), "recv_ns",
                             pc.add(again.column("recv_ns"), delay_s * 10**9))
    both = pa.concat_tables([trades, again.cast(trades.schema)]).sort_by("recv_ns")
    return {**market, "trades": both}, again.num_rows


def test_redelivered_trades_count_once(tmp_path):
    market = synthetic_market(seconds=60)
    doubled, n_again = _redelivered(market)
    write_segments(tmp_path / "ref/segments/ready", market, 1, seconds=60)
    runner(tmp_path / "ref").run_once()
    for n in (1, 12):
        root = tmp_path / f"dup{n}"
        staged = write_segments(root / "staging", doubled, n, seconds=60)
        (root / "segments/ready").mkdir(parents=True)
        outcomes = []
        for seg in staged:  # one runner per segment: the seen ids must survive in the checkpoint
            seg.rename(root / "segments/ready" / seg.name)
            outcomes += runner(root).run_once()
        assert len(outcomes) == n and all(o.state == "done" for o in outcomes)
        assert sum(o.result.duplicate_trades for o in outcomes) == n_again
        same_tree(tmp_path / "ref/features", root / "features")
        assert CheckpointStore(root / "state").counters()["duplicate_trades"] == n_again
