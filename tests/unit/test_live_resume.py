"""A reconnecting subscription (live/resume.py) delivers every row once, in JSON and in Arrow.

The frames are the wire's own (live/wire.py): a first connection delivers part of two
streams, one with two rows at one time; the next connection replays them (flagged replay)
and goes on live.  Delivered: each row once, in order -- including the second row at a time
whose first was delivered -- and the replay point covers the longest bar interval served.
"""
import json

import numpy as np
import pyarrow as pa

from fluxforge.live import wire
from fluxforge.live.resume import Resume

T0 = 1_733_130_000_000
SERVES = ["bars/interval=60s", "hf"]


def _rows(exchange: str, symbol: str, times: list[int], values: list[float]) -> pa.Table:
    return pa.table({"exchange": [exchange] * len(times), "symbol": [symbol] * len(times),
                     "timestamp": pa.array(times, pa.timestamp("ms", tz="UTC")),
                     "value": pa.array(values, pa.float64())})


A = _rows("binance", "BTC/USDT", [T0 + 1, T0 + 2, T0 + 2, T0 + 3, T0 + 4], [1.0, 2.0, np.nan, 3.0, 4.0])
B = _rows("binance", "ETH/USDT", [T0 + 1, T0 + 5], [10.0, 50.0])


def _frames(fmt: str, parts: list[tuple[pa.Table, bool]]) -> list[tuple[dict, bytes | None]]:
    """`subscribed`, the schema, then each (rows, replay) part as the hub sends it."""
    encode = wire.arrow_batches if fmt == "arrow" else wire.json_rows
    frames = [(wire.header("subscribed", id=1, serves=SERVES), None), wire.schema_frame("hf", A.schema, fmt)]
    frames += [f for table, replay in parts for f in encode("hf", table, replay)]
    return [(json.loads(h), p) for h, p in frames]


def _delivered(resume: Resume, frames, fmt: str) -> list[tuple]:
    out = []
    for head, payload in frames:
        got = resume.admit(head, payload)
        if got is None:
            continue
        head, payload = got
        if head["type"] == "row":
            out.append((head["symbol"], head["timestamp"], head["value"]))
        elif head["type"] == "batch":
            batch = wire.read_batch(payload, resume.schemas["hf"])
            assert batch.num_rows == head["rows"]
            ms = batch.column("timestamp").cast(pa.int64()).to_pylist()
            out += [(s, t, v if v == v else "NaN") for s, t, v in
                    zip(batch.column("symbol").to_pylist(), ms, batch.column("value").to_pylist())]
    return out


def _expected(*tables: pa.Table) -> list[tuple]:
    return [(s, t, "NaN" if v != v else v) for table in tables for s, t, v in
            zip(table.column("symbol").to_pylist(), table.column("timestamp").cast(pa.int64()).to_pylist(),
                table.column("value").to_pylist())]


def test_a_reconnect_delivers_each_row_once():
    for fmt in ("json", "arrow"):
        resume = Resume(None, None)
        # connection 1: BTC up to the first of its two rows at T0+2, ETH's first row
        got = _delivered(resume, _frames(fmt, [(A.slice(0, 2), False), (B.slice(0, 1), False)]), fmt)
        assert got == _expected(A.slice(0, 2), B.slice(0, 1)), fmt
        # the next connection replays from the oldest last row, a bar interval earlier
        assert resume.since_ms() == T0 + 1 - 60_000
        # connection 2 (the ETL restarted): its replay holds everything, flagged; then live rows
        got = _delivered(resume, _frames(fmt, [(A.slice(0, 4), True), (B, True), (A.slice(4), False)]), fmt)
        assert got == _expected(A.slice(2, 2), B.slice(1), A.slice(4)), fmt
        # connection 3: a replay with nothing new delivers nothing; live rows at a delivered time still go
        got = _delivered(resume, _frames(fmt, [(A, True), (B, True), (A.slice(4), False)]), fmt)
        assert got == _expected(A.slice(4)), fmt


def test_the_first_replay_point_is_where_the_subscription_began_until_a_row_is_delivered():
    assert Resume(T0, None).since_ms() == T0
    r = Resume(None, 5.0)
    assert abs(r.since_ms() - (Resume(None, None).since_ms() - 300_000)) < 5_000
    r = Resume(T0 - 86_400_000, None)  # since a day back: the next connection starts at the last row
    r.admit({"type": "subscribed", "serves": ["hf", "ticker"]}, None)
    for head, _ in _frames("json", [(B, False)])[2:]:
        r.admit(head, None)
    assert r.since_ms() == T0 + 5
