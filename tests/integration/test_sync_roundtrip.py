"""The whole edge pipeline, real parts only: loopback Binance -> ccxt.pro collector -> ETL (Cython kernels)
-> compaction -> verified sync to moto over HTTP -> download into an empty directory -> identical tree."""
from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import yaml
from collector_support import exchange_entry, make_config, running_collector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import MotoServer  # noqa: E402
from syncdata import tree_digest, fresh_logging  # noqa: E402,F401

from fluxforge.cli import main  # noqa: E402
from fluxforge.maintenance.compaction import compact  # noqa: E402
from fluxforge.etl.runner import EtlRunner  # noqa: E402
from fluxforge.loopback import LoopbackExchange, SimOptions  # noqa: E402
from fluxforge.bronze.segments import SegmentId, SegmentStore  # noqa: E402
from fluxforge.maintenance.tabledigest import TableDigest  # noqa: E402

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def digest(table) -> str:
    return TableDigest().update_all(table.to_batches()).hexdigest()


def collect(data_dir: Path, seconds: float) -> None:
    async def body():
        sim = SimOptions(rate=20, trades_per_update=0.7, ticker_interval=0.5, seed=5)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            cfg = make_config(data_dir, [exchange_entry(lx, "binance", SYMBOLS, book_depth=20)],
                              segment_max_seconds=1.5)
            async with running_collector(cfg):
                await asyncio.sleep(seconds)

    asyncio.run(asyncio.wait_for(body(), 120))


def test_collect_etl_compact_sync_download_identical(tmp_path):
    data = tmp_path / "data"
    collect(data, 7)
    store = SegmentStore(data / "segments")
    assert len(store.list("ready")) >= 2  # compaction needs two parts per partition
    cfg_path = tmp_path / "config.yaml"
    with MotoServer() as moto:
        moto.client().create_bucket(Bucket="fluxforge-rt")
        cfg_path.write_text(yaml.safe_dump({
            "data_dir": str(data), "host_id": "test", "logging": {"format": "json"},
            "etl": {"reorder_window": 0.2, "features": {"bar_durations": [1, 5], "hf_emit_interval": 0.5}},
            "compaction": {"target_file_mb": 8},
            "sync": {"enabled": True, "bucket": "fluxforge-rt", "prefix": "edge", "endpoint_url": moto.url,
                     "region": "us-east-1", "addressing_style": "path", "aws_access_key_id": "testing",
                     "aws_secret_access_key": "testing", "require_time_sync": False}}))
        from fluxforge.config import load_config
        cfg = load_config(cfg_path)
        outcomes = EtlRunner.from_config(cfg).run_once()
        assert outcomes and all(o.state == "done" for o in outcomes)
        assert not store.list("ready") and len(store.list("done")) == len(outcomes)

        parts_before = sorted(cfg.features_dir.rglob("part-*.parquet"))
        hf_before = ds.dataset(cfg.features_dir / "hf", partitioning="hive").to_table().sort_by(
            [("symbol", "ascending"), ("timestamp", "ascending")])
        # the day is over (as seen from tomorrow): its partitions are closed and get merged
        tomorrow = datetime.now(timezone.utc).date() + timedelta(days=1)
        report = compact(cfg, today=tomorrow)
        assert report.groups > 0 and report.rows > 0
        parts_after = sorted(cfg.features_dir.rglob("part-*.parquet"))
        assert len(parts_after) < len(parts_before)

        assert main(["sync", "-c", str(cfg_path)]) == 0
        restore = tmp_path / "restore"
        assert main(["sync", "-c", str(cfg_path), "--download", "", "--to", str(restore)]) == 0

        # features: the same files, byte for byte, and the same rows as before compaction
        assert tree_digest(restore / "features") == tree_digest(cfg.features_dir)
        hf_restored = ds.dataset(restore / "features" / "hf", partitioning="hive").to_table().sort_by(
            [("symbol", "ascending"), ("timestamp", "ascending")])
        # (Table.equals treats NaN != NaN; the features have NaNs, so compare canonical digests)
        assert hf_restored.schema.remove_metadata().equals(hf_before.schema.remove_metadata())
        assert hf_restored.num_rows == hf_before.num_rows > 0
        assert digest(hf_restored) == digest(hf_before)
        # bronze: every done segment, byte for byte, under host=/date=/<segment>/
        for seg in store.list("done"):
            sid = SegmentId.parse(seg.name)
            remote = restore / "bronze" / f"host={sid.host}" / f"date={sid.start_datetime.date()}" / seg.name
            assert tree_digest(remote) == tree_digest(seg)
            for f in seg.glob("*.parquet"):
                assert pq.read_table(remote / f.name).equals(pq.read_table(f))
        # and the restored bronze replays (on "another machine") into the same features as the live ETL
        dates = sorted(str(p) for p in (restore / "bronze" / "host=test").glob("date=*"))
        assert main(["replay", "-c", str(cfg_path), *dates, "--out", str(tmp_path / "replayed")]) == 0
        replayed = ds.dataset(tmp_path / "replayed" / "hf", partitioning="hive").to_table().sort_by(
            [("symbol", "ascending"), ("timestamp", "ascending")])
        assert replayed.num_rows == hf_before.num_rows
        assert digest(replayed) == digest(hf_before)
