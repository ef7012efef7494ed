"""Ticker features through the real ETL: 30 segments == 1, restart from the checkpoint, and
every row equal to the definition-level reference (tests/reference/ticker_reference.py)."""
import math
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from documented_schema import assert_documented
from etl_support import T0_MS, read_tree, synthetic_market, tables_equal, write_segments
from fluxforge.bronze import schemas as bronze
from fluxforge.config import FeatureOptions, TradeOptions
from fluxforge.etl.runner import EtlRunner
from fluxforge.features.ticker_layout import TICKER_INPUTS, ticker_fields
from tests.reference.ticker_reference import ticker_features
from tests.unit.test_ticker_features import close

FEATURES = FeatureOptions(bar_durations=[60], hf_emit_interval=1.0)
TRADES = TradeOptions(bar_durations=[], dollar_bar_size=0.0, ticker_horizons=[1, 5, 60])
SECONDS = 180


def synthetic_tickers(market: dict, seed: int = 3, hz: float = 4.0) -> pa.Table:
    """Ticker rows for every symbol of `market`: its book tops at random times, with missing
    sides, crossed quotes, missing sizes and redelivered duplicates; receive order, jittered."""
    rng = np.random.default_rng(seed)
    books = market["orderbook"]
    out = []
    for sym in sorted(set(books.column("symbol").to_pylist())):
        b = books.filter(pa.compute.equal(books.column("symbol"), sym)).sort_by("timestamp")
        bts = b.column("timestamp").to_numpy()
        n = int(SECONDS * hz)
        ts = np.sort(T0_MS + rng.integers(0, SECONDS * 1000, n))
        idx = np.clip(np.searchsorted(bts, ts), 0, len(bts) - 1)
        bid = np.array([b.column("bid_px")[int(i)][0].as_py() for i in idx])
        ask = np.array([b.column("ask_px")[int(i)][0].as_py() for i in idx])
        bsz, asz = rng.uniform(0, 4, n).round(3), rng.uniform(0, 4, n).round(3)
        kind = rng.integers(0, 25, n)
        bid = np.where(kind == 0, np.nan, bid)
        ask = np.where(kind == 1, bid - 0.01, ask)  # crossed
        bsz = np.where(kind == 2, np.nan, bsz)
        dup = np.flatnonzero(kind == 3)
        keep = np.sort(np.concatenate([np.arange(n), dup]))  # a duplicate right after its original
        ts, bid, ask, bsz, asz = ts[keep], bid[keep], ask[keep], bsz[keep], asz[keep]
        m = len(ts)
        nul = lambda a: pa.array(a, pa.float64(), from_pandas=True)  # noqa: E731  NaN -> null
        out.append(pa.table({
            "exchange": ["binance"] * m, "symbol": [sym] * m, "timestamp": ts,
            "recv_ns": ts * 1_000_000 + rng.integers(500_000, 3_000_000_000, m),  # up to 3 s late
            "bid": nul(bid), "bid_size": nul(bsz), "ask": nul(ask), "ask_size": nul(asz),
            "last": (bid + ask) / 2, "open": np.full(m, 100.0), "high": np.full(m, 110.0),
            "low": np.full(m, 90.0), "base_volume": 1000.0 + np.arange(m), "quote_volume": 1e5 + np.arange(m),
            "vwap": np.full(m, 100.5), "percentage": np.full(m, 0.1),
        }, schema=bronze.TICKER))
    return pa.concat_tables(out).sort_by("recv_ns")


@pytest.fixture(scope="module")
def market():
    m = synthetic_market(symbols=("BTC/USDT", "ETH/USDT"), seconds=SECONDS, depth=5,
                         gaps=[("BTC/USDT", 61_000), ("ETH/USDT", 119_990)], seed=5)
    return dict(m, ticker=synthetic_tickers(m))


def run_runner(root, market, n, restart_every=None):
    segs = write_segments(root / "staging", market, n, seconds=SECONDS)
    (root / "segments/ready").mkdir(parents=True)
    step = restart_every or n
    for i in range(0, n, step):
        for seg in segs[i:i + step]:
            seg.rename(root / "segments/ready" / seg.name)
        outcomes = EtlRunner(root / "segments", root / "features", root / "state", FEATURES,
                             trade_options=TRADES).run_once()
        assert [o.state for o in outcomes] == ["done"] * len(segs[i:i + step])
    return root / "features"


def reference(market, symbol):
    """The reference over the symbol's ticker rows; resets at the exchange time of the first
    book received at/after each gap event (the ETL's documented rule, engines.py)."""
    t = market["ticker"].filter(pa.compute.equal(market["ticker"].column("symbol"), symbol))
    order = np.argsort(t.column("timestamp").to_numpy(), kind="stable")
    t = t.take(pa.array(order))
    cols = [t.column("timestamp").to_pylist()] + [
        [math.nan if v is None else v for v in t.column(c).to_pylist()] for c in TICKER_INPUTS]
    rows = list(zip(*cols))
    books = market["orderbook"].filter(pa.compute.equal(market["orderbook"].column("symbol"), symbol))
    brecv, bts = books.column("recv_ns").to_numpy(), books.column("timestamp").to_numpy()
    ev = market["events"].filter(pa.compute.equal(market["events"].column("symbol"), symbol))
    resets = sorted(int(bts[np.argmax(brecv >= r)]) for r in ev.column("recv_ns").to_pylist())
    return ticker_features(rows, resets, TRADES.ticker_horizons)


def test_thirty_segments_equal_one_and_the_reference(tmp_path, market):
    root = run_runner(tmp_path / "one", market, 1)
    one = read_tree(root, "ticker")
    thirty = read_tree(run_runner(tmp_path / "thirty", market, 30), "ticker")
    assert one.num_rows > 0 and tables_equal(one, thirty)
    assert_documented(one.schema, "`ticker`", SimpleNamespace(horizons=TRADES.ticker_horizons),
                      partitions=("exchange", "symbol", "date"))
    fields = ticker_fields(TRADES.ticker_horizons)
    for symbol, path_value in (("BTC/USDT", "BTC-USDT"), ("ETH/USDT", "ETH-USDT")):
        parts = sorted((root / "ticker" / "exchange=binance" / f"symbol={path_value}").rglob("part-*.parquet"))
        got = pa.concat_tables([pq.read_table(p) for p in parts]).to_pylist()  # in stream order, as written
        assert list(got[0]) == fields
        want = reference(market, symbol)
        # the newest rows (after the watermark: within the reorder window) stay in the carry
        assert len(want) - 60 < len(got) < len(want), symbol
        assert want[len(got)]["timestamp"] >= want[-1]["timestamp"] - 5_000 - 1_000, symbol
        for i, (g, w) in enumerate(zip(got, want)):
            assert int(g["timestamp"].timestamp() * 1000) == w["timestamp"], (symbol, i)
            for name in fields[1:]:
                assert close(g[name], w[name], g, name), (symbol, i, name, g[name], w[name])


def test_restart_from_checkpoint_equals_one_run(tmp_path, market):
    one = read_tree(run_runner(tmp_path / "one", market, 1), "ticker")
    restarts = read_tree(run_runner(tmp_path / "restarts", market, 12, restart_every=3), "ticker")
    assert one.num_rows > 0 and tables_equal(one, restarts)
