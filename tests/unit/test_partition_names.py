"""Partition names are one-to-one, checked at config time, and a segment's parts commit all or nothing
(issue 17, item 7)."""
import pytest

from etl_support import LedgerEngine, T0_MS, synthetic_market, write_segments
from fluxforge.config import Config, FeatureOptions
from fluxforge.config_base import distinct_partitions
from fluxforge.etl.naming import (exchange_from_path_value, exchange_path_value, hf_partition,
                                  symbol_from_path_value, symbol_path_value)
from fluxforge.etl.runner import EtlRunner
from fluxforge.observe.feature_tree import resolve_symbol

SYMBOLS = ["BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC-250328", "ETH/BTC:BTC-250328-3000-C", "1000PEPE/USDT",
           "币安人生/USDT", "客服小何/USDT", "BTC-USDT", "BTCUSDT", "A-B/C", "a/b:c--x", "%2F/x", "X/Y:",
           "BTC/USDT:USDT-", "BTC/USDT/USDT", "ÄÖ/€", "", "-", "%"]


def test_symbol_encoding_is_one_to_one_and_readable_for_ascii():
    values = [symbol_path_value(s) for s in SYMBOLS]
    assert len(set(values)) == len(SYMBOLS)
    assert all(symbol_from_path_value(v) == s for s, v in zip(SYMBOLS, values))
    assert values[:5] == ["BTC-USDT", "BTC-USDT-USDT", "BTC-USD-BTC-250328", "ETH-BTC-BTC-250328-3000-C",
                          "1000PEPE-USDT"]
    assert all("/" not in v and v not in (".", "..") for v in values)
    for bad in ("BTC-USDT%", "%zz", "%e5", "BTC/USDT"):
        with pytest.raises(ValueError):
            symbol_from_path_value(bad)
    for ex in ("binance", "okx", "my-exchange", "ex/../x", "交易所"):
        v = exchange_path_value(ex)
        assert "/" not in v and exchange_from_path_value(v) == ex


def test_config_refuses_symbols_sharing_a_partition():
    cfg = Config.model_validate({"exchanges": [{"name": "binance", "symbols": ["币安人生/USDT", "客服小何/USDT"]}]})
    assert len({symbol_path_value(s) for s in cfg.exchanges[0].symbols}) == 2
    lossy = lambda s: s.replace("/", "-")  # noqa: E731 -- what a lossy encoding would do
    with pytest.raises(ValueError, match="same feature partition"):
        distinct_partitions(["BTC/USDT", "BTC-USDT"], lossy, "symbols")


def test_non_ascii_symbols_land_in_their_own_partitions(tmp_path):
    market = synthetic_market(symbols=("币安人生/USDT", "客服小何/USDT"), seconds=30)
    write_segments(tmp_path / "segments/ready", market, 2, seconds=30)
    runner = EtlRunner(tmp_path / "segments", tmp_path / "features", tmp_path / "state",
                       FeatureOptions(bar_durations=[1]), row_group_rows=1024, engine_class=LedgerEngine)
    assert [o.state for o in runner.run_once()] == ["done", "done"]
    dirs = {p.name for p in (tmp_path / "features/hf/exchange=binance").iterdir()}
    assert dirs == {f"symbol={symbol_path_value(s)}" for s in ("币安人生/USDT", "客服小何/USDT")}
    for sym in ("币安人生/USDT", "客服小何/USDT"):
        assert resolve_symbol(tmp_path / "features", sym, None) == ("binance", symbol_path_value(sym))
    assert resolve_symbol(tmp_path / "features", "客服小何/USDT", None)[1] != \
        resolve_symbol(tmp_path / "features", "币安人生/USDT", None)[1]


def test_failed_commit_removes_the_parts_it_renamed(tmp_path):
    """One part cannot be renamed into place (a directory squats its name): the segment fails
    and no part of it is left in the tree (before, those renamed first stayed and were uploaded)."""
    market = synthetic_market(symbols=("BTC/USDT", "ETH/USDT"), seconds=30)
    [seg] = write_segments(tmp_path / "segments/ready", market, 1, seconds=30)
    squat = hf_partition(tmp_path / "features", "binance", "ETH/USDT", T0_MS // 86_400_000) / f"part-{seg.name}.parquet"
    squat.mkdir(parents=True)
    (squat / "keep").write_text("x")
    runner = EtlRunner(tmp_path / "segments", tmp_path / "features", tmp_path / "state",
                       FeatureOptions(bar_durations=[1]), row_group_rows=1024, engine_class=LedgerEngine)
    [outcome] = runner.run_once()
    assert outcome.state == "failed"
    left = [p for p in (tmp_path / "features").rglob("*") if p.is_file() and p.name != "keep"]
    assert left == []
