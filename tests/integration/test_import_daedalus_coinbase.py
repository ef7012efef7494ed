"""Daedalus's `coinbaseadvanced` and FluxForge's `coinbase` are one stream after moving in.

Daedalus collected Coinbase Advanced Trade under the ccxt id `coinbaseadvanced`;
ccxt.pro 4.5 (and so FluxForge) calls it `coinbase`.  End to end, with the real
commands: the old config is translated (`fluxforge config import-daedalus`), the old
data (NDJSON and a partitioned Parquet tree, `exchange=coinbaseadvanced`) is imported
(`fluxforge import daedalus`), and every bronze row must carry the exchange id the
translated config collects under, so `fluxforge replay` puts the old data's features
in the same `exchange=` partitions the new collector's go to.
"""
from datetime import datetime, timezone

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from daedalus_writer import expected_bronze, synthetic_records, write_ndjson, write_parquet
from fluxforge.bronze.segments import SegmentStore
from fluxforge.cli import main
from fluxforge.config import parse_config

START = datetime(2025, 9, 1, 8, 10, tzinfo=timezone.utc)
OLD_CONFIG = """
ccxt:
  exchanges:
    coinbaseadvanced:
      max_orderbook_depth: 50
      api_key: ""
      channels:
        watchTicker: [BTC/USD, ETH/USD]
        watchTrades: [BTC/USD, ETH/USD]
        watchOrderBook: [BTC/USD, ETH/USD]
"""


@pytest.mark.parametrize("kind", ["ndjson", "partitioned"])
def test_coinbaseadvanced_data_lands_under_the_translated_configs_exchange(tmp_path, capsys, kind):
    (tmp_path / "old.yaml").write_text(OLD_CONFIG)
    assert main(["config", "import-daedalus", str(tmp_path / "old.yaml")]) == 0
    cfg = parse_config(yaml.safe_load(capsys.readouterr().out), secrets=False)
    (entry,) = cfg.exchanges
    assert entry.name == "coinbase"

    records = synthetic_records(START, minutes=20, symbols=("BTC/USD", "ETH/USD"), exchange="coinbaseadvanced")
    if kind == "ndjson":
        write_ndjson(tmp_path / "raw", records)
    else:
        write_parquet(tmp_path / "raw", records, partitioned=True)
        assert (tmp_path / "raw" / "trades" / "exchange=coinbaseadvanced").is_dir()
    data = tmp_path / "data"
    assert main(["import", "daedalus", str(tmp_path / "raw"), "--to", str(data)]) == 0
    assert "coinbaseadvanced -> coinbase" in capsys.readouterr().out

    segs = SegmentStore(data / "segments").list("ready")
    expected = expected_bronze(records)
    for channel in ("orderbook", "trades", "ticker"):
        rows = [r for s in segs for r in pq.read_table(s / f"{channel}.parquet").to_pylist()]
        assert len(rows) == len(expected[channel]) > 0
        assert {r["exchange"] for r in rows} == {entry.name}
        assert {r["symbol"] for r in rows} == set(entry.channel_symbols()[channel])
        # nothing but the exchange id changed
        assert [dict(r, exchange=None) for r in rows] == [dict(e, exchange=None) for e in expected[channel]]

    features = tmp_path / "features"
    assert main(["replay", str(data / "segments"), "--out", str(features)]) == 0
    hf = ds.dataset(features / "hf", format="parquet", partitioning="hive").to_table(columns=["exchange"])
    assert hf.num_rows > 0 and set(hf.column("exchange").to_pylist()) == {entry.name}
