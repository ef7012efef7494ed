"""Exactly once with the real kernels and real processes: SIGKILL `fluxforge etl` at 20 random
moments over a run of many segments; the final tree equals an uninterrupted run, no duplicates."""
import os
import random
import shutil
import signal
import subprocess

import numpy as np
import pyarrow as pa
import pytest

from notify_listener import NotifyListener
from etl_support import tables_equal, etl_config, fluxforge_cmd, synthetic_market, tree_files, write_segments
from fluxforge.config import FeatureOptions, TradeOptions
from fluxforge.etl.runner import EtlRunner
from ticker_support import synthetic_tickers

FEATURES = {"bar_durations": [1, 5, 60], "hf_emit_interval": 0.5}
TRADES = {"volume_bar_size": 0.7, "dollar_bar_size": 5_000.0, "per_trade": True}
KILLS = 20


@pytest.mark.slow
def test_sigkill_at_random_moments_gives_identical_tree(tmp_path):
    market = synthetic_market(symbols=("BTC/USDT", "ETH/USDT", "SOL/USDT"), seconds=240, depth=10,
                              gaps=[("ETH/USDT", 100_000)], seed=11)
    market["ticker"] = synthetic_tickers(market, 240, hz=2.0)
    staging = tmp_path / "staging"
    write_segments(staging, market, 40, seconds=240)

    # uninterrupted reference, in process
    ref = tmp_path / "ref"
    shutil.copytree(staging, ref / "segments/ready")
    EtlRunner(ref / "segments", ref / "features", ref / "state", FeatureOptions(**FEATURES),
              trade_options=TradeOptions(**TRADES)).run_once()

    data = tmp_path / "killed"
    (data / "segments/ready").mkdir(parents=True)
    arriving = sorted(staging.iterdir())  # segments arrive two per ETL lifetime, as from a collector
    cfg = etl_config(tmp_path / "config.yaml", data, FEATURES, trades=TRADES)
    rng = random.Random(20241121)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    kills = mid_segment = 0
    for i in range(KILLS):
        for seg in arriving[2 * i: 2 * i + 2]:
            seg.rename(data / "segments/ready" / seg.name)
        listener = NotifyListener(tmp_path / "notify.sock")
        proc = subprocess.Popen(fluxforge_cmd("etl", "--config", str(cfg)), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if i % 4 == 0:  # during start-up and recovery of the segment left in processing/
                delay = rng.uniform(0.2, 1.5)
            else:           # while segments are being processed
                assert listener.wait_for("READY=1", 120), "etl never became ready"
                delay = rng.uniform(0.0, 0.25)
            proc.wait(timeout=delay)  # a service does not exit by itself: this is the random moment
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait(30)
            listener.close()
        processing = data / "segments/processing"  # absent if killed before the ETL made its directories
        mid_segment += processing.is_dir() and any(processing.iterdir())
        # never a visible partial part
        for p in (data / "features").rglob("part-*.parquet"):
            pa.parquet.read_metadata(p)
    assert kills >= KILLS - 2
    assert mid_segment >= 3, f"only {mid_segment} kills hit a segment in processing/"
    rc = subprocess.run(fluxforge_cmd("etl", "--once", "--config", str(cfg)), capture_output=True, timeout=300)
    assert rc.returncode == 0, rc.stderr.decode()[-2000:]
    assert len(list((data / "segments/done").iterdir())) == 40
    assert not list((data / "segments/failed").iterdir())

    a, b = tree_files(ref / "features"), tree_files(data / "features")
    assert a.keys() == b.keys()
    for tree in ("hf", "bars", "trade_bars", "volume_bars", "dollar_bars", "trades", "ticker"):  # the trade products too
        assert any(k.startswith(tree + "/") for k in a), tree
    for k in a:
        assert tables_equal(a[k], b[k]), k
    assert not list((data / "features").rglob(".*"))
    # no duplicate rows: one hf row per (symbol, timestamp)
    import pyarrow.dataset as ds
    hf = ds.dataset(data / "features/hf", partitioning="hive").to_table(columns=["symbol", "timestamp"])
    keys = np.char.add(np.asarray(hf.column("symbol").to_pylist(), dtype=str),
                       hf.column("timestamp").cast(pa.int64()).to_numpy().astype(str))
    assert len(np.unique(keys)) == hf.num_rows > 0
