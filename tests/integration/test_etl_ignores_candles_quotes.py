"""The ETL processes segments holding `ohlcv` and `bidsasks` rows (real kernels) and ignores
them: every segment reaches done/, and the features are those of the same segments without them."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from etl_support import read_tree, synthetic_market, tables_equal, tree_files, write_segments
from fluxforge.bronze.schemas import BIDSASKS, OHLCV
from fluxforge.config import FeatureOptions
from fluxforge.etl.runner import EtlRunner

OPTIONS = FeatureOptions(bar_durations=[1, 5])


def candles_and_quotes(market: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """An ohlcv row per trade (the open 1s candle re-sent) and a bidsasks row per book, same times."""
    trades, books = market["trades"], market["orderbook"]
    ts = trades.column("timestamp").to_numpy()
    px = trades.column("price").to_numpy()
    n = trades.num_rows
    ohlcv = pa.table({"exchange": trades.column("exchange"), "symbol": trades.column("symbol"),
                      "timestamp": ts - ts % 1000, "recv_ns": trades.column("recv_ns"), "timeframe": ["1s"] * n,
                      "open": px, "high": px, "low": px, "close": px, "volume": np.ones(n)}, schema=OHLCV)
    best = lambda col: pa.array([row[0] for row in books.column(col).to_pylist()])  # noqa: E731
    quotes = pa.table({"exchange": books.column("exchange"), "symbol": books.column("symbol"),
                       "timestamp": pa.nulls(books.num_rows, pa.int64()), "recv_ns": books.column("recv_ns"),
                       "bid": best("bid_px"), "bid_size": best("bid_sz"), "ask": best("ask_px"),
                       "ask_size": best("ask_sz")}, schema=BIDSASKS)
    return {"ohlcv": ohlcv, "bidsasks": quotes}


def run(root, tables):
    write_segments(root / "segments" / "ready", tables, 4, seconds=30)
    runner = EtlRunner(root / "segments", root / "features", root / "state", OPTIONS, row_group_rows=1024)
    return runner.run_once()


def test_segments_with_candles_and_quotes_are_processed_and_ignored(tmp_path):
    market = synthetic_market(seconds=30)
    extra = candles_and_quotes(market)
    outcomes = run(tmp_path / "with", {**market, **extra})
    assert [o.state for o in outcomes] == ["done"] * 4, [(o.state, getattr(o, "reason", None)) for o in outcomes]
    assert not list((tmp_path / "with/segments/failed").glob("*"))
    run(tmp_path / "without", market)
    for kind in ("hf", "bars"):
        assert read_tree(tmp_path / "with/features", kind).num_rows > 0
        assert tables_equal(read_tree(tmp_path / "with/features", kind), read_tree(tmp_path / "without/features", kind))
    assert sorted(tree_files(tmp_path / "with/features")) == sorted(tree_files(tmp_path / "without/features"))
