"""Daedalus's Coinbase data (`coinbaseadvanced` and its native collector) and FluxForge's `coinbase` are one stream.

Daedalus collected Coinbase Advanced Trade under the ccxt id `coinbaseadvanced`;
ccxt.pro 4.5 (and so FluxForge) calls it `coinbase`.  End to end, with the real
commands: the old config is translated (`fluxforge config import-daedalus`), the old
data (NDJSON and a partitioned Parquet tree, `exchange=coinbaseadvanced`) is imported
(`fluxforge import daedalus`), and every bronze row must carry the exchange id the
translated config collects under, so `fluxforge replay` puts the old data's features
in the same `exchange=` partitions the new collector's go to.  The same for the data of
Daedalus's native Coinbase collector (raw Advanced Trade messages) and its `coinbase:` section.
"""
from datetime import datetime, timedelta, timezone

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from daedalus_coinbase_writer import expected_native_bronze, native_records
from collector_support import segment_table
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
        rows = [r for s in segs for r in segment_table(s, channel).to_pylist()]
        assert len(rows) == len(expected[channel]) > 0
        assert {r["exchange"] for r in rows} == {entry.name}
        assert {r["symbol"] for r in rows} == set(entry.channel_symbols()[channel])
        # nothing but the exchange id changed
        assert [dict(r, exchange=None) for r in rows] == [dict(e, exchange=None) for e in expected[channel]]

    features = tmp_path / "features"
    assert main(["replay", str(data / "segments"), "--out", str(features)]) == 0
    hf = ds.dataset(features / "hf", format="parquet", partitioning="hive").to_table(columns=["exchange"])
    assert hf.num_rows > 0 and set(hf.column("exchange").to_pylist()) == {entry.name}


NATIVE_CONFIG = """
coinbase:
  api_key: organizations/abc/apiKeys/KEY
  api_secret: "-----BEGIN EC PRIVATE KEY-----\\nPEM\\n-----END EC PRIVATE KEY-----\\n"
  product_ids: [BTC-USD, ETH-USD]
  channels: [level2, market_trades, ticker, heartbeats]
"""


def _recv_ns(rec: dict) -> int:
    return (datetime.fromisoformat(rec["capture_ts"]) - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(
        microseconds=1) * 1000


@pytest.mark.parametrize("kind", ["ndjson", "flat", "partitioned"])
def test_native_coinbase_collector_data_imports_under_the_translated_configs_exchange(tmp_path, capsys, kind):
    """The native collector's raw messages (NDJSON lines, or the Parquet writer's generic rows with
    exchange/symbol "unknown") become bronze rows under the translated entry's exchange and symbols,
    every row compared with the message it came from; a lost message (sequence_num) is a gap event,
    a new connection a reconnect; its book snapshots and deltas replay."""
    (tmp_path / "old.yaml").write_text(NATIVE_CONFIG)
    assert main(["config", "import-daedalus", str(tmp_path / "old.yaml")]) == 0
    (entry,) = parse_config(yaml.safe_load(capsys.readouterr().out), secrets=False).exchanges

    records = native_records(START, minutes=25)
    lost = records.pop(60)["data"]["sequence_num"]  # a message Daedalus never stored (full queue, dropped frame)
    assert lost > 0 and records[60]["data"]["sequence_num"] == lost + 1
    if kind == "ndjson":
        write_ndjson(tmp_path / "raw", records)
    else:
        write_parquet(tmp_path / "raw", records, partitioned=(kind == "partitioned"))
    data = tmp_path / "data"
    assert main(["import", "daedalus", str(tmp_path / "raw"), "--to", str(data)]) == 0
    out = capsys.readouterr().out
    assert "coinbase subscriptions 8" in out  # 4 acks per connection, not market data: counted
    assert "ticker.low_52_w:" in out and "orderbook.event_time:" in out  # no bronze column: counted

    segs = SegmentStore(data / "segments").list("ready")
    expected = expected_native_bronze(records)
    for channel, want in expected.items():
        rows = [r for s in segs for r in segment_table(s, channel).to_pylist()]
        assert rows == want and len(rows) > 0, channel
        assert {r["exchange"] for r in rows} == {entry.name}
        if channel in entry.channel_symbols():
            assert {r["symbol"] for r in rows} == set(entry.channel_symbols()[channel])
    assert {r["kind"] for r in expected["orderbook"]} == {"snapshot", "delta"}
    # Daedalus never checked sequence_num: the lost message is a gap, the new connection a reconnect
    events = [r for s in segs for r in pq.read_table(s / "events.parquet").to_pylist()]
    reconnect = next(r for r in records if r["data"]["sequence_num"] == 0 and r is not records[0])
    assert [(e["event"], e["recv_ns"], e["exchange"], e["symbol"]) for e in events] == sorted([
        ("gap", _recv_ns(records[60]), "coinbase", None), ("reconnect", _recv_ns(reconnect), "coinbase", None)],
        key=lambda e: e[1])
    assert f"sequence_num {lost + 1} after {lost - 1}: a message was lost" in next(
        e["reason"] for e in events if e["event"] == "gap")

    features = tmp_path / "features"
    assert main(["replay", str(data / "segments"), "--out", str(features)]) == 0
    hf = ds.dataset(features / "hf", format="parquet", partitioning="hive").to_table(columns=["exchange", "symbol"])
    assert hf.num_rows > 0 and set(hf.column("exchange").to_pylist()) == {"coinbase"}
