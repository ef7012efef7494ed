"""Real Binance captures replayed at 40x through loopback -> collector -> ETL with live features:
every row published live equals the row that lands in Parquet.

Real books (depth 20 with real gaps between levels), real trade flow and a replay fast
enough that segments rotate every few seconds of wall time, so most rows are published
from the active segment and the rest when the segment job finishes each segment.  (Rows
that arrive behind the watermark -- where the chunking matters -- are provoked in
tests/unit/test_live_follow.py.)  Skips cleanly without ../shared/data/binance-spot.
"""
import asyncio
import subprocess

import pytest
from collector_support import config_dict, exchange_entry, replay_capture, running_collector, subprocess_env, wait_until
from live_support import etl_command, first_difference, landed, published, read_records, row_keys

from fluxforge.bronze.segments import SegmentStore
from fluxforge.config import parse_config
from fluxforge.loopback import LoopbackExchange

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


@pytest.mark.realdata
@pytest.mark.slow
def test_real_capture_live_rows_equal_parquet(tmp_path, shared_capture):
    files = [shared_capture / "btcusdt_20240808.gz", shared_capture / "ethusdt_20240808.gz"]
    data = tmp_path / "data"
    record = tmp_path / "live.rec"
    etl_log = tmp_path / "etl.log"
    store = SegmentStore(data / "segments")

    async def body():
        lx = LoopbackExchange("replay", replay_files=files, speed=40.0)
        lx.freeze()  # hold the replay until the collector has its snapshots
        async with lx:
            raw = config_dict(data, [exchange_entry(lx, "binance", SYMBOLS, book_depth=20,
                                                    channels=["orderbook", "trades"])], segment_max_seconds=3.0)
            raw["etl"] = {"poll_interval": 0.2, "reorder_window": 0.5, "live": {"enabled": True, "poll_interval": 0.05},
                          "features": {"hf_emit_interval": 1.0, "bar_durations": [5, 60]}}
            (tmp_path / "config.yaml").write_text(__import__("yaml").safe_dump(raw))
            with open(etl_log, "ab") as elog:
                etl = await asyncio.create_subprocess_exec(*etl_command(tmp_path / "config.yaml", record),
                                                           env=subprocess_env(), stdout=subprocess.DEVNULL,
                                                           stderr=elog)
                async with running_collector(parse_config(raw)) as col:
                    await replay_capture(lx, col, SYMBOLS)
                await wait_until(lambda: not any(store.list(s) for s in ("active", "ready", "processing")), 120,
                                 what="the ETL processing the last segment")
                etl.terminate()
                assert await asyncio.wait_for(etl.wait(), 60) == 0

    asyncio.run(body())
    assert not store.list("failed") and len(store.list("done")) >= 2
    log_text = etl_log.read_text(errors="replace")
    assert '"live_error"' not in log_text and '"live_chunks_mismatch"' not in log_text, log_text[-3000:]

    records = read_records(record)
    assert not any(r.replay for r in records)  # no restart here: nothing is published twice
    live, truth = published(records, False), landed(data / "features")
    assert {k[0] for k in truth} >= {"hf", "bars/interval=5s"} and set(live) == set(truth)
    for key, table in truth.items():
        assert row_keys(live[key]) == row_keys(table), f"{key}: {first_difference(live[key], table)}"
