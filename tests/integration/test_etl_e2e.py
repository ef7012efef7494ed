"""Collector -> ETL end to end on the loopback exchange (real ccxt.pro, real processes for the ETL).

The collector runs in this process against the loopback Binance; `fluxforge etl`
runs as a service subprocess beside it, consuming segments as they rotate.  Then:
features exist for every configured symbol (books and trades), the tree reads as
one table with the documented schema, and `fluxforge replay` over the same bronze
writes exactly the same files.
"""
import asyncio
import os
import signal
import subprocess

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import yaml
from collector_support import config_dict, exchange_entry, parse_config, running_collector, subprocess_env, wait_until

from notify_listener import NotifyListener
from documented_schema import assert_documented
from etl_support import fluxforge_cmd, tables_equal, tree_files
from fluxforge.config import FeatureOptions
from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
FEATURES = {"hf_emit_interval": 0.2, "bar_durations": [1, 5]}


def test_collector_to_etl_on_loopback(tmp_path):
    data = tmp_path / "data"
    listener = NotifyListener(tmp_path / "notify.sock")

    async def body():
        sim = SimOptions(rate=20, trades_per_update=0.8, ticker_interval=0.5, seed=3)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            cfg = config_dict(data, [exchange_entry(lx, "binance", SYMBOLS, book_depth=20)],
                              segment_max_seconds=1.5, max_concurrent_snapshots=1)
            cfg["etl"] = {"poll_interval": 0.5, "reorder_window": 0.5, "features": FEATURES}
            (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
            etl = subprocess.Popen(fluxforge_cmd("etl", "--config", str(tmp_path / "config.yaml")),
                                   env=subprocess_env(NOTIFY_SOCKET=str(listener.path)),
                                   stdout=subprocess.DEVNULL, stderr=open(tmp_path / "etl.log", "wb"))
            try:
                async with running_collector(parse_config(cfg)):
                    await asyncio.sleep(7)
                segments = data / "segments"
                await wait_until(lambda: not any(list((segments / s).iterdir()) for s in ("active", "ready", "processing")),
                                 timeout=90, what="ETL to drain ready/")
                assert await asyncio.to_thread(listener.wait_for, "READY=1", 30)
                # Arrow's mimalloc arena is not MADV_HUGEPAGE, THP off for the process (etl/__init__.py)
                assert "THP_enabled:\t0" in open(f"/proc/{etl.pid}/status").read()
                flags = [ln for ln in open(f"/proc/{etl.pid}/smaps") if ln.startswith("VmFlags")]
                assert flags and not [ln for ln in flags if " hg" in ln], flags
            finally:
                etl.send_signal(signal.SIGTERM)
                rc = await asyncio.to_thread(etl.wait, 60)
            assert rc == 0, (tmp_path / "etl.log").read_text()[-3000:]

    asyncio.run(body())
    assert listener.wait_for("STOPPING=1", 5)
    assert any(m.startswith("STATUS=") and "rows/s" in m for m in listener.messages)
    listener.close()
    done = list((data / "segments/done").iterdir())
    assert len(done) >= 3 and not list((data / "segments/failed").iterdir())

    hf = ds.dataset(data / "features/hf", format="parquet", partitioning="hive").to_table()
    assert_documented(hf.schema, "`hf`", FeatureOptions(**FEATURES), partitions=("exchange", "symbol", "date"))
    assert hf.column_names[-3:] == ["exchange", "symbol", "date"]
    assert hf.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert set(hf.column("exchange").to_pylist()) == {"binance"}
    assert set(hf.column("symbol").to_pylist()) == {s.replace("/", "-") for s in SYMBOLS}
    for sym in SYMBOLS:
        rows = hf.filter(pc.equal(hf.column("symbol"), sym.replace("/", "-")))
        assert rows.num_rows > 10, sym
        assert pc.max(rows.column("mid_price")).as_py() > 0, sym            # from books
    bars = ds.dataset(data / "features/bars", format="parquet", partitioning="hive").to_table()
    assert set(bars.column("interval").to_pylist()) == {"1s", "5s"}
    for sym in SYMBOLS:
        rows = bars.filter(pc.equal(bars.column("symbol"), sym.replace("/", "-")))
        assert pc.sum(rows.column("trade_count")).as_py() > 0, sym          # from trades
        assert pc.sum(rows.column("buy_volume")).as_py() + pc.sum(rows.column("sell_volume")).as_py() > 0

    out = tmp_path / "replayed"
    rep = subprocess.run(fluxforge_cmd("replay", "--config", str(tmp_path / "config.yaml"),
                                       str(data / "segments"), "--out", str(out)),
                         capture_output=True, timeout=300, env=subprocess_env())
    assert rep.returncode == 0, rep.stderr.decode()[-2000:]
    live, replayed = tree_files(data / "features"), tree_files(out)
    assert live.keys() == replayed.keys()
    assert all(tables_equal(live[k], replayed[k]) for k in live)
    assert os.path.exists(data / "state/etl/checkpoint.arrow")
