"""Real Binance captures -> loopback (replay) -> collector -> ETL, checked against the reference.

Skips cleanly without ../shared/data/binance-spot.  The ETL's hf rows and closed
bars must equal tests/reference (slow, from the definitions) computed on the
same bronze rows of each symbol.
"""
import asyncio
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from collector_support import config_dict, exchange_entry, parse_config, running_collector, wait_until

from fluxforge.config import FeatureOptions
from fluxforge.etl.runner import EtlRunner
from fluxforge.loopback import LoopbackExchange

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
FEATURES = {"hf_emit_interval": 1.0, "bar_durations": [5, 60]}


@pytest.mark.realdata
@pytest.mark.slow
def test_real_capture_through_collector_and_etl_matches_reference(tmp_path, shared_capture):
    from tests.reference.stream_reference import reference

    files = [shared_capture / "btcusdt_20240808.gz", shared_capture / "ethusdt_20240808.gz"]
    data = tmp_path / "data"

    async def body():
        lx = LoopbackExchange("replay", replay_files=files, speed=40.0)
        lx.freeze()  # hold the replay until the collector has its snapshots
        async with lx:
            cfg = parse_config(config_dict(data, [exchange_entry(lx, "binance", SYMBOLS, book_depth=20,
                                                                 channels=["orderbook", "trades"])],
                                           segment_max_seconds=2.0))
            async with running_collector(cfg):
                await asyncio.sleep(2.0)
                lx.freeze(False)
                await wait_until(lambda: lx.source.finished, timeout=120, what="capture replay to finish")
                await asyncio.sleep(2.0)

    asyncio.run(body())
    opts = FeatureOptions(**FEATURES)
    # default options: the replay runs 40x faster than the capture, so the book stream lags the
    # trade stream by tens of seconds of exchange time -- the ETL's watermark must absorb that
    runner = EtlRunner(data / "segments", data / "features", data / "state", opts)
    outcomes = runner.run_once()
    assert len(outcomes) >= 3 and all(o.state == "done" for o in outcomes)

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
        ref_hf, ref_bars = reference(books_s, trades_s, resets=resets, options=opts, mode="numpy")
        ours = hf.filter(pc.equal(hf.column("symbol"), part)).sort_by("timestamp")
        mm = pc.min_max(books_s.column("timestamp")).as_py()
        span_s = (mm["max"] - mm["min"]) / 1000
        assert ours.num_rows >= span_s - 60 > 200, (sym, ours.num_rows, span_s)  # one row a second
        ref_by_ts = {r["timestamp"] if isinstance(r["timestamp"], int) else _ms(r["timestamp"]): r for r in ref_hf}
        _compare_rows(ours, ref_by_ts, sym)
        for d in FEATURES["bar_durations"]:
            ours_b = bars.filter(pc.and_(pc.equal(bars.column("symbol"), part),
                                         pc.equal(bars.column("interval"), f"{d}s"))).sort_by("timestamp")
            ref_b = {_ms(r["timestamp"]) if not isinstance(r["timestamp"], int) else r["timestamp"]: r
                     for r in ref_bars[d]}
            assert ours_b.num_rows >= (span_s - 60) // d - 2, (sym, d)
            _compare_rows(ours_b, ref_b, f"{sym} bars {d}s")


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


def _compare_rows(ours: pa.Table, ref_by_ts: dict, what: str) -> None:
    ts = ours.column("timestamp").cast(pa.int64()).to_pylist()
    missing = [t for t in ts if t not in ref_by_ts]
    assert not missing, f"{what}: {len(missing)} rows not in the reference, first {missing[:3]}"
    skip = {"timestamp", "exchange", "symbol", "date", "interval"}
    bad = []
    for name in ours.column_names:
        if name in skip or name not in next(iter(ref_by_ts.values())):
            continue
        got = ours.column(name).to_pylist()
        for t, g in zip(ts, got):
            want = ref_by_ts[t][name]
            if not _close(g, want):
                bad.append((name, t, g, want))
    assert not bad, f"{what}: {len(bad)} values differ from the reference, e.g. {bad[:5]}"


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None or (a is None and isinstance(b, float) and math.isnan(b)) \
            or (b is None and isinstance(a, float) and math.isnan(a))
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return bool(np.isclose(a, b, rtol=1e-6, atol=1e-9))
    return a == b
