"""Live features == Parquet: every row the ETL publishes from the active segment is the row
that later lands in features/, across rotations, a collector SIGKILL/restart and an ETL
SIGKILL/restart; nothing is missing and a row published twice is flagged as a replay.

Real parts: the loopback exchange speaking Binance to unmodified ccxt, `fluxforge collect`
as a process, the ETL service as a process whose hub records what it publishes
(live_support.RecordingHub); every wait is on the condition itself.
"""
from __future__ import annotations

import asyncio
import signal
import subprocess

import numpy as np
import pyarrow.compute as pc
import yaml
from collector_support import collector_command, config_dict, subprocess_env, wait_until
from live_support import etl_command, first_difference, landed, published, read_records, row_keys
from test_collector_e2e import binance_entry

from fluxforge.bronze.segments import SegmentStore
from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
FLUSH = 0.25
REORDER = 1.0
SEGMENT_SECONDS = 4.0


async def _spawn(cmd, log):
    return await asyncio.create_subprocess_exec(*cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=log)


def _following(data, chunks: int) -> bool:
    """The ETL has fed `chunks` chunks of the active segment (so it has published rows of it)."""
    d = data / "state" / "etl" / "live"
    active = {p.name for p in SegmentStore(data / "segments").list("active")}
    return any(p.stem in active and len(p.read_text().splitlines()) >= chunks for p in d.glob("*.chunks")) \
        if d.is_dir() else False


def test_live_rows_equal_parquet_across_rotations_and_kills(tmp_path, reorder=REORDER):
    data = tmp_path / "data"
    record = tmp_path / "live.rec"
    etl_log = tmp_path / "etl.log"

    async def body():
        sim = SimOptions(rate=20, trades_per_update=1.0, ticker_interval=0.5, seed=14)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            cfg = config_dict(data, [binance_entry(lx, SYMBOLS, book_depth=20)], flush_interval=FLUSH,
                              segment_max_seconds=SEGMENT_SECONDS)
            cfg["etl"] = {"poll_interval": 0.2, "reorder_window": reorder, "live": {"enabled": True, "poll_interval": 0.05}}
            config = tmp_path / "config.yaml"
            config.write_text(yaml.safe_dump(cfg))
            store = SegmentStore(data / "segments")

            def done(n):
                return len(store.list("done")) >= n

            with open(tmp_path / "collector.log", "ab") as clog, open(etl_log, "ab") as elog:
                collector = await _spawn(collector_command(config), clog)
                etl = await _spawn(etl_command(config, record), elog)
                await wait_until(lambda: done(2) and read_records(record), 180, what="two segments and live rows")
                collector.send_signal(signal.SIGKILL)
                await collector.wait()
                collector = await _spawn(collector_command(config), clog)
                await wait_until(lambda: done(4), 180, what="segments after the collector restart")
                # 2.5 s into a segment: rows older than the reorder window have been published
                await wait_until(lambda: _following(data, int((REORDER + 1.5) / FLUSH)), 60,
                                 what="the ETL following an active segment")
                etl.send_signal(signal.SIGKILL)
                await etl.wait()
                etl = await _spawn(etl_command(config, record), elog)
                await wait_until(lambda: done(7), 240, what="segments after the ETL restart")
                collector.send_signal(signal.SIGTERM)  # finishes its segment into ready/
                assert await asyncio.wait_for(collector.wait(), 60) == 0
                await wait_until(lambda: not any(store.list(s) for s in ("active", "ready", "processing")), 120,
                                 what="the ETL processing the last segment")
                etl.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(etl.wait(), 60) == 0
            return store

    store = asyncio.run(asyncio.wait_for(body(), 900))
    assert not store.list("failed")
    log_text = etl_log.read_text(errors="replace")
    assert '"live_error"' not in log_text, log_text[-3000:]
    assert '"live_chunks_mismatch"' not in log_text

    records = read_records(record)
    live, replays, truth = published(records, False), published(records, True), landed(data / "features")
    assert {k[0] for k in truth} >= {"hf", "bars/interval=1s", "trade_bars/interval=1s"}, sorted(truth)
    assert set(live) | set(replays) == set(truth)
    replay_only = 0
    for key, table in truth.items():
        rows = row_keys(table)
        index = {r: i for i, r in enumerate(rows)}
        sent = row_keys(live[key]) if key in live else []
        again = set(row_keys(replays[key])) if key in replays else set()
        # every published row is a Parquet row (all columns equal, NaN == NaN) ...
        assert set(sent) <= set(rows), f"{key}: {first_difference(live[key], table)}"
        assert again <= set(rows), f"{key}: a replayed row that is not in Parquet"
        # ... published once and in order unless flagged as a replay, and none is missing
        positions = [index[r] for r in sent]
        assert positions == sorted(set(positions)), f"{key}: unflagged duplicate or out of order"
        assert set(sent) | again == set(rows), f"{key}: {len(set(rows) - set(sent) - again)} row(s) never published"
        replay_only += len(set(rows) - set(sent))
    # the ETL restart re-published rows of the segment it was following, flagged as replays
    assert sum(t.num_rows for t in replays.values()) > 0
    assert replay_only <= 0.2 * sum(t.num_rows for t in truth.values())

    # live, not at the segment's end: most hf rows reached the hub within flush + reorder window
    # (+ scheduling slack on a loaded box) of their exchange time, well before their segment ended
    lat = np.concatenate([r.t - pc.cast(r.table.column("timestamp"), "int64").to_numpy() / 1000.0
                          for r in records if r.product == "hf" and not r.replay])
    assert np.median(lat) < FLUSH + reorder + 1.0, np.quantile(lat, [0.5, 0.9, 0.99])
