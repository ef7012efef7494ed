"""Backfill planning: filters, which segments a stream's unit needs, and how units are dealt into tasks."""
from fluxforge.backfill.plan import Filters, SegmentStreams, build_tasks, build_units, parse_time
from fluxforge.backfill.source import SegmentRef

T0 = parse_time("2024-08-08")


def ref(host: str, seq: int, lo_s: int, hi_s: int, rows: int = 100) -> SegmentRef:
    name = f"seg-{host}-20240808T0000{seq:02d}Z-{seq:06d}"
    return SegmentRef(name, local=f"/x/{name}", manifest={"channels": {
        "orderbook": {"min_ts": T0 + lo_s * 1000, "max_ts": T0 + hi_s * 1000, "rows": rows},
        "trades": {"rows": rows // 10}}})


def test_times_and_globs():
    assert parse_time("2024-08-08T00:00:10Z") == T0 + 10_000 == parse_time("2024-08-08T00:00:10")
    f = Filters(hosts=("pi0*",), symbols=("BTC/*",))
    assert f.host_ok("pi01") and not f.host_ok("cap01")
    assert f.key_ok(("binance", "BTC/USDT")) and not f.key_ok(("binance", "ETH/USDT"))
    assert Filters().key_ok(("okx", "anything"))


def test_segments_selected_by_manifest_range_with_the_carry_margin():
    f = Filters(start_ms=T0 + 100_000, end_ms=T0 + 200_000)
    assert not f.segment_ok(ref("a", 1, 0, 99), reorder_ms=5000)          # ends before start
    assert f.segment_ok(ref("a", 2, 90, 120), reorder_ms=5000)
    assert f.segment_ok(ref("a", 3, 250, 300), reorder_ms=5000)           # within 13 x 5 s past end
    assert not f.segment_ok(ref("a", 4, 266, 300), reorder_ms=5000)
    assert f.emit_range == (T0 + 100_000, T0 + 200_000)


def test_a_unit_takes_its_segments_and_later_exchange_wide_resets_only():
    segs = [ref("a", 1, 0, 10), ref("a", 2, 10, 20), ref("a", 3, 20, 30), ref("b", 1, 0, 10)]
    btc, eth = ("binance", "BTC/USDT"), ("binance", "ETH/USDT")
    scans = {segs[0].name: SegmentStreams(frozenset({btc}), frozenset({"binance"})),
             segs[1].name: SegmentStreams(frozenset({eth})),
             segs[2].name: SegmentStreams(frozenset(), frozenset({"binance"})),
             segs[3].name: SegmentStreams(bad="sha256 mismatch")}
    units = {u.id: [s.name for s in u.segments] for u in build_units(segs, scans, Filters())}
    assert units == {"host=a/exchange=binance/symbol=BTC-USDT": [segs[0].name, segs[2].name],
                     "host=a/exchange=binance/symbol=ETH-USDT": [segs[1].name, segs[2].name]}


def test_units_dealt_per_host_to_keep_workers_busy():
    segs = [ref(h, 1, 0, 10) for h in ("a", "b")]
    keys = frozenset(("binance", f"S{i}/USDT") for i in range(6))
    units = build_units(segs, {s.name: SegmentStreams(keys) for s in segs}, Filters())
    one = build_tasks(units, workers=1)
    assert len(one) == 2 and all(len({u.host for u in t.units}) == 1 for t in one)
    many = build_tasks(units, workers=4)
    assert len(many) == 8 and sorted(u.id for t in many for u in t.units) == sorted(u.id for u in units)
    assert len(build_tasks(units, workers=64)) == 12  # never more tasks than units


def test_tasks_run_largest_first_by_the_rows_their_manifests_list():
    """Host b has one segment but the most rows: its task goes first, then a's three, then c's."""
    segs = [ref("a", i, 10 * i, 10 * i + 10, rows=1000) for i in range(1, 4)]
    segs += [ref("b", 1, 0, 10, rows=5000), ref("c", 1, 0, 10, rows=10)]
    keys = frozenset({("binance", "BTC/USDT")})
    units = build_units(segs, {s.name: SegmentStreams(keys) for s in segs}, Filters())
    tasks = build_tasks(units, workers=1)
    assert [t.host for t in tasks] == ["b", "a", "c"]
    assert [t.weight for t in tasks] == [5500, 3300, 11]
