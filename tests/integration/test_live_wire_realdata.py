"""Rows produced by the real ETL on real captures cross the live wire unchanged.

Two segments of the real Binance captures (through the collector's journals and
finishing, tests/fleet_bronze.py) run through the real ETL (EtlRunner, the Cython
kernels); ETH's books carry no update id (like an exchange without sequence
numbers), so its hf `nonce` is null.  Every Parquet part is published as the ETL
hands rows to the hub (the part's rows plus exchange and symbol), and a JSON and
an Arrow subscriber must receive exactly the Parquet rows: timestamps, NaN and
nulls included -- as `subscribe()` rows and batches (the Arrow wire), and as the JSON wire's
row lines decoded.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from etl_support import tables_equal, write_segments
from fleet_bronze import capture_host_tables
from live_support import feature_parts, json_wire_rows, running_hub, same_rows, wait_for
from fluxforge.config import FeatureOptions
from fluxforge.etl.runner import EtlRunner
from fluxforge.live import subscribe


def etl_outputs(shared_capture: Path, data: Path) -> list[tuple[str, pa.Table]]:
    tables = capture_host_tables(shared_capture, 3000)
    books = tables["orderbook"]
    i = books.schema.get_field_index("nonce")
    eth = pc.equal(books.column("symbol"), "ETH/USDT")
    tables["orderbook"] = books.set_column(i, books.schema.field("nonce"),
                                           pc.if_else(eth, pa.scalar(None, pa.int64()), books.column("nonce")))
    recv = tables["orderbook"].column("recv_ns")
    start_ms = recv[0].as_py() // 1_000_000
    write_segments(data / "segments" / "ready", tables, 2, host="cap01", start_ms=start_ms,
                   seconds=(recv[-1].as_py() // 1_000_000 - start_ms) / 1000)
    runner = EtlRunner(data / "segments", data / "features", data / "state", FeatureOptions())
    assert [o.state for o in runner.run_once()] == ["done", "done"]
    return feature_parts(data / "features")


@pytest.mark.realdata
def test_real_etl_rows_round_trip_with_nan_null_and_timestamps(tmp_path, shared_capture):
    published = etl_outputs(shared_capture, tmp_path / "data")
    products = {p for p, _ in published}
    assert {"hf", "bars/interval=60s", "trade_bars/interval=1s", "dollar_bars"} <= products
    everything = pa.concat_tables([t for p, t in published if p == "hf"])
    assert any(pc.any(pc.is_nan(c)).as_py() for c in everything.columns if pa.types.is_floating(c.type))
    assert everything.column("nonce").null_count > 0
    assert everything.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    total = sum(t.num_rows for _, t in published)

    async def scenario():
        async with running_hub() as hub:
            async def take(**kw):
                got, rows = [], 0
                async for item in subscribe(socket=hub.socket_path, **kw):
                    got.append(item)
                    rows += item.batch.num_rows if kw.get("batches") else 1
                    if rows == total:
                        return got
            rows = asyncio.create_task(take())
            batches = asyncio.create_task(take(batches=True))
            lines = asyncio.create_task(json_wire_rows(total, socket=hub.socket_path))
            await wait_for(lambda: len(hub.subscribers) == 3, what="subscribers")
            for product, table in published:
                hub.publish(product, table)
            return [await asyncio.wait_for(t, 120) for t in (rows, batches, lines)]

    rows, batches, lines = asyncio.run(scenario())
    want = [{"product": p, "replay": False, **r} for p, t in published for r in t.to_pylist()]
    assert same_rows(rows, want)
    assert same_rows(lines, want)
    assert [b.product for b in batches] == [p for p, _ in published]
    for b, (_, table) in zip(batches, published):
        assert tables_equal(pa.Table.from_batches([b.batch]), table)
