"""Ticker features through the real ETL: 30 segments == 1, restart from the checkpoint, and
every row equal to the definition-level reference (tests/reference/ticker_reference.py)."""
import math
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from documented_schema import assert_documented
from etl_support import read_tree, synthetic_market, tables_equal, write_segments
from fluxforge.config import FeatureOptions, TradeOptions
from fluxforge.etl.runner import EtlRunner
from fluxforge.features.ticker_layout import TICKER_INPUTS, ticker_fields
from tests.reference.ticker_reference import ticker_features
from ticker_support import synthetic_tickers
from tests.unit.test_ticker_features import close

FEATURES = FeatureOptions(bar_durations=[60], hf_emit_interval=1.0)
TRADES = TradeOptions(bar_durations=[], dollar_bar_size=0.0, ticker_horizons=[1, 5, 60])
SECONDS = 180


@pytest.fixture(scope="module")
def market():
    m = synthetic_market(symbols=("BTC/USDT", "ETH/USDT"), seconds=SECONDS, depth=5,
                         gaps=[("BTC/USDT", 61_000), ("ETH/USDT", 119_990)], seed=5)
    return dict(m, ticker=synthetic_tickers(m, SECONDS))


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


def test_a_ticker_only_symbol_is_processed_alike_in_any_segmentation(tmp_path, market):
    """A symbol with tickers but neither books nor trades (channels: [ticker]): its tickers set
    the watermark, so rows are written, the same for 1 and 10 segments."""
    only = {"ticker": market["ticker"]}
    one = read_tree(run_runner(tmp_path / "one", only, 1), "ticker")
    ten = read_tree(run_runner(tmp_path / "ten", only, 10), "ticker")
    # all but the newest MAX_CARRY_FACTOR reorder windows (60 s of 180), which the carry holds
    assert one.num_rows > 0.5 * market["ticker"].num_rows and tables_equal(one, ten)
