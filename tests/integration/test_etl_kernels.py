"""The ETL with the real feature kernels: continuity, live service == replay, bad segments."""
import itertools
import json
import shutil
import subprocess

import duckdb  # a required test dependency (pyproject [test]): never skipped
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from documented_schema import assert_documented
from etl_support import (as_book_messages, tables_equal, etl_config, fluxforge_cmd, read_tree, synthetic_market,
                          tree_files, write_segments)
from fluxforge.config import FeatureOptions, TradeOptions
from fluxforge.etl.runner import EtlRunner

FEATURES = {"bar_durations": [1, 5, 60], "hf_emit_interval": 0.5}
TRADES = TradeOptions(volume_bar_size=0.7, dollar_bar_size=5_000.0, per_trade=True)
TRADE_TREES = ("trade_bars", "volume_bars", "dollar_bars", "trades")


@pytest.fixture(scope="module")
def market():
    return synthetic_market(symbols=("BTC/USDT", "ETH/USDT"), seconds=180, depth=20,
                            gaps=[("BTC/USDT", 61_000), ("ETH/USDT", 119_990)], seed=5)


def run_runner(root, market, n):
    write_segments(root / "segments/ready", market, n, seconds=180)
    outcomes = EtlRunner(root / "segments", root / "features", root / "state", FeatureOptions(**FEATURES),
                         trade_options=TRADES).run_once()
    assert [o.state for o in outcomes] == ["done"] * n
    return root / "features"


def test_thirty_segments_equal_one_with_kernels(tmp_path, market):
    one = run_runner(tmp_path / "one", market, 1)
    thirty = run_runner(tmp_path / "thirty", market, 30)
    for kind in ("hf", "bars") + TRADE_TREES:
        a, b = read_tree(one, kind), read_tree(thirty, kind)
        assert a.num_rows > 0 and tables_equal(a, b), kind
    bars = read_tree(thirty, "bars")
    assert set(bars.column("interval").to_pylist()) == {"1s", "5s", "60s"}
    trade_bars = read_tree(thirty, "trade_bars")
    assert set(trade_bars.column("interval").to_pylist()) == {"1s", "5s", "60s"}  # 180 s: no 300 s bar closes
    assert not all(trade_bars.column("is_empty").to_pylist()) and any(trade_bars.column("is_empty").to_pylist())


def test_the_live_catalog_accepts_every_product_the_etl_writes(tmp_path, market):
    """A live subscription is checked against Catalog.from_config (fluxforge/live/catalog.py): each
    tree the ETL writes for these options must be a product the catalog names, or its subscribers
    would be refused; what the catalog names beyond them is only what 180 s cannot close (300 s and
    3600 s trade bars) and the ticker features (the synthetic market has no tickers)."""
    from fluxforge.config import Config
    from fluxforge.live.catalog import Catalog

    out = run_runner(tmp_path, market, 3)
    written = {"/".join(itertools.takewhile(lambda p: not p.startswith("exchange="), part.relative_to(out).parts))
               for part in out.rglob("part-*.parquet")}
    cfg = Config.model_validate({"data_dir": str(tmp_path), "host_id": "t",
                                 "etl": {"features": FEATURES, "trades": TRADES.model_dump(mode="json")}})
    catalog = Catalog.from_config(cfg).products
    assert {"hf", "bars/interval=1s", "volume_bars", "dollar_bars", "trades", "trade_bars/interval=60s"} <= written
    assert written <= catalog, written - catalog
    assert catalog - written == {"trade_bars/interval=300s", "trade_bars/interval=3600s", "ticker"}


def test_thirty_segments_equal_one_with_book_deltas(tmp_path, market):
    """Format 2 books (snapshot + deltas): the rebuilt book is in the checkpoint, so cutting the
    stream into 30 segments changes nothing, and every delta was applied (no gap, no mismatch)."""
    deltas = dict(market, orderbook=as_book_messages(market["orderbook"], snapshot_every=300))
    one = run_runner(tmp_path / "one", deltas, 1)
    thirty = run_runner(tmp_path / "thirty", deltas, 30)
    for kind in ("hf", "bars"):
        a, b = read_tree(one, kind), read_tree(thirty, kind)
        assert a.num_rows > 0 and tables_equal(a, b), kind
    # the same books as snapshots give the same features (the deltas rebuild the same books)
    snaps = run_runner(tmp_path / "snaps", market, 1)
    hf_d, hf_s = read_tree(thirty, "hf"), read_tree(snaps, "hf")
    cols = ["timestamp", "symbol", "mid_price", "total_bid_volume", "bid_vol_band_0_5bps", "ofi_sum_1s"]
    assert tables_equal(hf_d.select(cols), hf_s.select(cols))


def test_live_service_equals_replay_and_bad_segments_are_skipped(tmp_path, market):
    data = tmp_path / "data"
    segs = write_segments(data / "segments/ready", market, 12, seconds=180)
    # four kinds of bad segment, interleaved with good ones
    corrupt = segs[2] / "orderbook.parquet"
    blob = bytearray(corrupt.read_bytes())
    blob[len(blob) // 3] ^= 0x5A
    corrupt.write_bytes(bytes(blob))
    trunc = segs[4] / "trades.parquet"
    trunc.write_bytes(trunc.read_bytes()[: trunc.stat().st_size // 2])
    wrong = segs[6] / "trades.parquet"
    t = pa.parquet.read_table(wrong).drop_columns(["side"])
    pa.parquet.write_table(t, wrong)
    m = json.loads((segs[6] / "manifest.json").read_text())
    m["channels"]["trades"] = {"file": "trades.parquet", "rows": t.num_rows}
    (segs[6] / "manifest.json").write_text(json.dumps(m))
    m = json.loads((segs[8] / "manifest.json").read_text())
    m["channels"]["orderbook"]["rows"] -= 3
    (segs[8] / "manifest.json").write_text(json.dumps(m))
    bronze_copy = tmp_path / "bronze"
    shutil.copytree(data / "segments/ready", bronze_copy)

    cfg = etl_config(tmp_path / "config.yaml", data, FEATURES, trades=TRADES.model_dump(),
                     symbol_overrides={"binance:ETH/USDT": {"volume_bar_size": 1.5}})
    live = subprocess.run(fluxforge_cmd("etl", "--once", "--config", str(cfg)), capture_output=True, timeout=300)
    assert live.returncode == 0, live.stderr.decode()[-2000:]
    failed = {p.name: (p / "reason.txt").read_text() for p in (data / "segments/failed").iterdir()}
    assert sorted(failed) == sorted(s.name for s in (segs[2], segs[4], segs[6], segs[8]))
    assert "orderbook.parquet: sha256" in failed[segs[2].name]
    assert "trades.parquet: size" in failed[segs[4].name]
    assert "wrong schema: column 'side' is missing" in failed[segs[6].name]
    assert "rows but manifest.json says" in failed[segs[8].name]
    assert len(list((data / "segments/done").iterdir())) == 8
    assert b"segment_failed" in live.stderr

    out = tmp_path / "replayed"
    rep = subprocess.run(fluxforge_cmd("replay", "--config", str(cfg), str(bronze_copy), "--out", str(out)),
                         capture_output=True, timeout=300)
    assert rep.returncode == 0, rep.stderr.decode()[-2000:]
    assert b"replayed 8 segments" in rep.stdout and b"skipped 4 unusable" in rep.stdout
    a, b = tree_files(data / "features"), tree_files(out)
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        assert tables_equal(a[k], b[k]), k
    for tree in TRADE_TREES:
        assert any(k.startswith(tree + "/") for k in a), tree
    vb = read_tree(out, "volume_bars").to_pydict()
    sizes = {sym: {t for t, s in zip(vb["threshold"], vb["symbol"]) if s == sym} for sym in ("BTC-USDT", "ETH-USDT")}
    assert sizes == {"BTC-USDT": {0.7}, "ETH-USDT": {1.5}}  # etl.symbol_overrides, live and replayed


def test_tree_reads_as_one_table_with_duckdb(tmp_path, market):
    root = run_runner(tmp_path, market, 3)
    con = duckdb.connect()
    hf = con.sql(f"SELECT * FROM read_parquet('{root}/hf/*/*/*/*.parquet', hive_partitioning=true)").to_arrow_table()
    ref = ds.dataset(root / "hf", partitioning="hive").to_table()
    assert hf.num_rows == ref.num_rows > 0
    # the documented schema (docs/schemas.md) + the partition columns
    assert_documented(ref.schema, "`hf`", FeatureOptions(**FEATURES), partitions=("exchange", "symbol", "date"))
    assert {"exchange", "symbol", "date"} <= set(hf.column_names) and len(hf.column_names) == len(ref.column_names)
    bars_ref = ds.dataset(root / "bars", partitioning="hive").to_table()
    assert_documented(bars_ref.schema, "`bars`", FeatureOptions(**FEATURES),
                      partitions=("interval", "exchange", "symbol", "date"))
    assert ref.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")  # DuckDB itself shows us
    bars = con.sql(f"SELECT interval, symbol, count(*) FROM read_parquet('{root}/bars/*/*/*/*/*.parquet', "
                   "hive_partitioning=true) GROUP BY ALL").fetchall()
    assert {b[0] for b in bars} == {"1s", "5s", "60s"}


def test_restart_from_checkpoint_equals_one_run(tmp_path, market):
    """A new runner per few segments: every output, incl. trade bars, continues from the checkpoint file."""
    one = run_runner(tmp_path / "one", market, 1)
    root = tmp_path / "restarts"
    segs = write_segments(tmp_path / "staging", market, 12, seconds=180)
    (root / "segments/ready").mkdir(parents=True)
    for i in range(0, len(segs), 3):
        for seg in segs[i:i + 3]:
            seg.rename(root / "segments/ready" / seg.name)
        outcomes = EtlRunner(root / "segments", root / "features", root / "state", FeatureOptions(**FEATURES),
                             trade_options=TRADES).run_once()
        assert [o.state for o in outcomes] == ["done"] * len(segs[i:i + 3])
    for kind in ("hf", "bars") + TRADE_TREES:
        a, b = read_tree(one, kind), read_tree(root / "features", kind)
        assert a.num_rows > 0 and tables_equal(a, b), kind
