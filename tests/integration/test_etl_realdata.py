"""Real Binance captures -> loopback (replay) -> collector -> ETL, checked against the reference.

Skips cleanly without ../shared/data/binance-spot.  The ETL's hf rows and closed
bars must equal tests/reference (slow, from the definitions) computed on the
same bronze rows of each symbol.
"""
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from collector_support import record_capture

from fluxforge.config import FeatureOptions
from fluxforge.etl.runner import EtlRunner

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
FEATURES = {"hf_emit_interval": 1.0, "bar_durations": [5, 60]}


@pytest.mark.realdata
@pytest.mark.slow
def test_real_capture_through_collector_and_etl_matches_reference(tmp_path, shared_capture):
    from tests.reference.stream_reference import reference

    files = [shared_capture / "btcusdt_20240808.gz", shared_capture / "ethusdt_20240808.gz"]
    data = tmp_path / "data"

    record_capture(data, files, SYMBOLS, ["orderbook", "trades"])
    opts = FeatureOptions(**FEATURES)
    # default options: the replay runs 40x faster than the capture, so the book stream lags the
    # trade stream by tens of seconds of exchange time -- the ETL's watermark must absorb that
    runner = EtlRunner(data / "segments", data / "features", data / "state", opts)
    outcomes = runner.run_once()
    assert len(outcomes) >= 2 and all(o.state == "done" for o in outcomes)  # continuity across segments

    bronze = ds.dataset([p / "orderbook.parquet" for p in sorted((data / "segments/done").iterdir())]).to_table()
    trades = ds.dataset([p / "trades.parquet" for p in sorted((data / "segments/done").iterdir())]).to_table()
    events = ds.dataset([p / "events.parquet" for p in sorted((data / "segments/done").iterdir())]).to_table()
    reset_rows = events.filter(pc.is_in(events.column("event"), pa.array(["gap", "resync", "reconnect"]))).to_pylist()
    hf = ds.dataset(data / "features/hf", partitioning="hive").to_table()
    bars = ds.dataset(data / "features/bars", partitioning="hive").to_table()
    for sym in SYMBOLS:
        part = sym.replace("/", "-")
        books_s = bronze.filter(pc.equal(bronze.column("symbol"), sym))
        trades_s = trades.filter(pc.equal(trades.column("symbol"), sym))
        assert books_s.num_rows > 1000, sym
        resets = _reset_times(books_s, [e["recv_ns"] for e in reset_rows if e["symbol"] in (None, sym)])
        ref_hf, ref_bars = reference(books_s, trades_s, resets=resets, options=opts, mode="numpy",
                                     max_gap_ms=runner.bank.max_gap_ms)  # etl.max_gap_seconds, as the ETL
        ours = hf.filter(pc.equal(hf.column("symbol"), part)).sort_by("timestamp")
        assert ours.num_rows > 100, (sym, ours.num_rows)
        # rows not written yet are exactly those the checkpoint still carries: the newest ones
        carried = runner.bank.state(("binance", sym)).carry.books
        held_from = int(pc.min(carried.column("timestamp")).as_py()) if carried is not None else None
        ref_by_ts = {_ms(r["timestamp"]): r for r in ref_hf}
        _compare_rows(ours, ref_by_ts, sym, HF_PARTITIONS, held_from)
        # the bar of the last book the kernel has processed is still open (not written, not carried
        # either): the reference, which flushes open bars, may go on from its start
        book_ts = pc.drop_null(books_s.column("timestamp")).cast(pa.int64()).to_numpy()
        book_ts = book_ts[book_ts < held_from] if held_from is not None else book_ts
        last_processed = int(book_ts.max())
        for d in FEATURES["bar_durations"]:
            ours_b = bars.filter(pc.and_(pc.equal(bars.column("symbol"), part),
                                         pc.equal(bars.column("interval"), f"{d}s"))).sort_by("timestamp")
            ref_b = {_ms(r["timestamp"]): r for r in ref_bars[d]}
            assert ours_b.num_rows >= 3, (sym, d)
            _compare_rows(ours_b, ref_b, f"{sym} bars {d}s", HF_PARTITIONS | {"interval"},
                          last_processed - last_processed % (d * 1000))


def _reset_times(books: pa.Table, events_recv_ns: list[int]) -> list[int]:
    """Documented rule: a reset event applies at the exchange time of the first timed book received after it."""
    timed = books.filter(pc.is_valid(books.column("timestamp")))
    recv = timed.column("recv_ns").to_numpy()
    ts = timed.column("timestamp").to_numpy()
    out = []
    for ev in events_recv_ns:
        later = recv >= ev
        if later.any():
            out.append(int(ts[later][np.argmin(recv[later])]))
    return out


def _ms(value) -> int:
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)


HF_PARTITIONS = {"exchange", "symbol", "date"}
# Relative tolerance per column (|ours - ref| <= rtol * max(|ref|, rtol_floor * column scale)):
# the kernels and the reference sum in different orders (Kahan/Welford vs numpy), so rolling
# sums and moments differ in the last bits; everything else is one formula on the same inputs.
RTOL = 1e-9
RTOL_BY_COLUMN: dict[str, float] = {}


def _compare_rows(ours: pa.Table, ref_by_ts: dict, what: str, partitions: set, held_from: int | None) -> None:
    """Same columns, same rows (all reference rows before the carried tail, none other), close values."""
    ref_cols = set(next(iter(ref_by_ts.values())))
    assert set(ours.column_names) - partitions == ref_cols, (
        f"{what}: columns differ: ours only {sorted(set(ours.column_names) - partitions - ref_cols)}, "
        f"reference only {sorted(ref_cols - set(ours.column_names))}")
    ts = ours.column("timestamp").cast(pa.int64()).to_pylist()
    assert len(ts) == len(set(ts)), f"{what}: duplicated rows"
    last = max(ts)
    expected = {t for t in ref_by_ts if t <= last}
    assert set(ts) == expected, (f"{what}: {len(set(ts) - expected)} rows not in the reference, "
                                 f"{len(expected - set(ts))} reference rows missing, first {sorted(expected ^ set(ts))[:3]}")
    tail = sorted(t for t in ref_by_ts if t > last)
    if tail:  # the reference (all rows, open bars flushed) goes on where the carried rows begin
        assert held_from is not None and tail[0] >= held_from - 1000 * FEATURES["hf_emit_interval"], (
            f"{what}: written rows stop at {last}, the checkpoint carries from {held_from}")
    bad, worst = [], {}
    for name in sorted(ref_cols - {"timestamp"}):
        got = ours.column(name).to_pylist()
        want = [ref_by_ts[t][name] for t in ts]
        rtol = RTOL_BY_COLUMN.get(name, RTOL)
        finite = [abs(w) for w in want if isinstance(w, float) and math.isfinite(w)]
        floor = 1e-6 * max(finite) if finite else 0.0
        if _bounded_ratio(name):  # (b - a) / (b + a): its rounding error scales with the bound 1, not the value
            floor = max(floor, 1e-6)
        for t, g, w in zip(ts, got, want):
            ok, err = _close(g, w, rtol, floor)
            worst[name] = max(worst.get(name, 0.0), err)
            if not ok:
                bad.append((name, t, g, w))
    print(f"{what}: worst relative error per column: {sorted(worst.items(), key=lambda kv: -kv[1])[:8]}")
    assert not bad, f"{what}: {len(bad)} values differ from the reference, e.g. {bad[:5]}"


def _bounded_ratio(name: str) -> bool:
    """Imbalance columns lie in [-1, 1]: near 0 they are a difference of nearly equal sums."""
    return name.startswith("imb") or "imbalance" in name


def _close(a, b, rtol: float, floor: float) -> tuple[bool, float]:
    """(within tolerance, relative error) of one value; None and NaN match each other only."""
    a_nan = a is None or (isinstance(a, float) and math.isnan(a))
    b_nan = b is None or (isinstance(b, float) and math.isnan(b))
    if a_nan or b_nan:
        return a_nan and b_nan, 0.0 if a_nan and b_nan else math.inf
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
        if math.isinf(a) or math.isinf(b):
            return a == b, 0.0 if a == b else math.inf
        scale = max(abs(b), floor)
        err = abs(a - b) / scale if scale > 0 else (0.0 if a == b else math.inf)
        return err <= rtol, err
    return a == b, 0.0 if a == b else math.inf
