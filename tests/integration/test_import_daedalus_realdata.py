"""The real Binance capture (../shared/data), written as Daedalus NDJSON and imported back, equals the original.

The capture's books (top 20 after every applied diff, as ccxt handed them to
Daedalus's collector) and trades become the records Daedalus's collector queued
(test-side writer, tests/daedalus_writer.py), are written as Daedalus NDJSON segments
and imported with `fluxforge import daedalus`; the bronze rows must equal the
original rows, except that receive times are kept at the µs Daedalus's `capture_ts`
stored (the capture has ns).
"""
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from collector_support import segment_table
from daedalus_writer import record, write_ndjson
from fluxforge.bronze.schemas import CHANNEL_SCHEMAS
from fluxforge.bronze.segments import SegmentStore
from fluxforge.cli import main
from reference.binance_capture import load


def _capture_time(recv_ns: int) -> datetime:
    return datetime.fromtimestamp(recv_ns // 1000 / 1e6, tz=timezone.utc).replace(microsecond=recv_ns // 1000 % 1_000_000)


def _records(books: pa.Table, trades: pa.Table) -> list[dict]:
    out = []
    for b in books.to_pylist():
        data = {"bids": [list(x) for x in zip(b["bid_px"], b["bid_sz"])],
                "asks": [list(x) for x in zip(b["ask_px"], b["ask_sz"])],
                "timestamp": b["timestamp"], "datetime": None, "nonce": b["nonce"], "symbol": b["symbol"]}
        out.append((b["recv_ns"], 0, record("orderbook", b["exchange"], b["symbol"], data, _capture_time(b["recv_ns"]))))
    for t in trades.to_pylist():
        data = [{"id": t["trade_id"], "timestamp": t["timestamp"], "datetime": None, "symbol": t["symbol"],
                 "side": t["side"], "price": t["price"], "amount": t["amount"], "cost": t["price"] * t["amount"],
                 "takerOrMaker": None, "type": None, "order": None, "fee": None, "fees": [], "info": {}}]
        out.append((t["recv_ns"], 1, record("trades", t["exchange"], t["symbol"], data, _capture_time(t["recv_ns"]))))
    return [r for _, _, r in sorted(out, key=lambda x: (x[0], x[1]))]


def _in_us(table: pa.Table) -> pa.Table:
    us = pc.multiply(pc.divide(table.column("recv_ns"), 1000), 1000)
    return table.set_column(table.schema.get_field_index("recv_ns"), "recv_ns", us)


def test_binance_capture_round_trips_through_daedalus_ndjson(tmp_path, shared_capture, capsys):
    books, trades = load(shared_capture / "btcusdt_20240808.gz", depth=20)
    write_ndjson(tmp_path / "old", _records(books, trades))
    data = tmp_path / "data"
    assert main(["import", "daedalus", str(tmp_path / "old"), "--to", str(data), "--host", "pi"]) == 0
    segs = SegmentStore(data / "segments").list("ready")
    for channel, original in (("orderbook", books), ("trades", trades)):
        got = pa.concat_tables([segment_table(s, channel) for s in segs]).cast(CHANNEL_SCHEMAS[channel])
        want = _in_us(original).cast(CHANNEL_SCHEMAS[channel])
        # receive order, as bronze keeps it (the capture's trades and books interleave)
        want = want.take(pc.sort_indices(want, [("recv_ns", "ascending")]))
        assert got.num_rows == want.num_rows > 1000, channel
        assert got.equals(want), (channel, next(i for i, (a, b) in enumerate(zip(got.to_pylist(), want.to_pylist()))
                                                 if a != b))
    assert "malformed" not in capsys.readouterr().out
