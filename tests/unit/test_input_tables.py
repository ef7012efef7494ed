"""The feature engine's input tables (features/input_tables.py): one schema for every table the
engine holds, bronze rows taken by a select, and checkpoints of the
version that declared `kind` nullable still restoring to the same rows."""
from __future__ import annotations

import base64
import json

import pyarrow as pa
import pytest

from fluxforge.features import input_tables
from fluxforge.features.engine import FeatureEngine, concat_results

T0 = 1_723_161_600_000


def _books(times, kind=None, extra=False):
    n = len(times)
    cols = {"timestamp": pa.array(times, pa.int64())}
    if extra:
        cols["recv_ns"] = pa.array([t * 1_000_000 + 7 for t in times], pa.int64())
    cols["kind"] = pa.array(kind or ["snapshot"] * n, pa.string())
    cols["nonce"] = pa.array(range(1, n + 1), pa.int64())
    cols["prev_nonce"] = pa.array([None] * n, pa.int64())
    for side, base, sign in (("bid", 100.0, -1), ("ask", 100.5, 1)):
        cols[f"{side}_px"] = pa.array([[base + sign * 0.1 * (i % 3), base + sign * 0.2] for i in range(n)],
                                      pa.list_(pa.float64()))
        cols[f"{side}_sz"] = pa.array([[1.0 + i, 2.0] for i in range(n)], pa.list_(pa.float64()))
    table = pa.table(cols)
    if extra:  # as bronze declares them
        fields = [f.with_nullable(False) if f.name in ("recv_ns", "kind") else f for f in table.schema]
        table = pa.Table.from_arrays(table.columns, schema=pa.schema(fields))
    return table


def _trades(times):
    return pa.table({"timestamp": pa.array(times, pa.int64()), "price": pa.array([100.2] * len(times)),
                     "amount": pa.array([0.5] * len(times)), "side": pa.array(["buy", "sell"] * (len(times) // 2)
                                                                             + ["buy"] * (len(times) % 2))})


def test_bronze_books_are_selected_and_every_input_gets_one_schema():
    bronze = _books([T0, T0 + 100], extra=True)
    got = input_tables.normalise(bronze, "books")
    assert got.schema.equals(input_tables.SCHEMAS["books"]) and not got.schema.field("kind").nullable
    assert got.column("bid_px").chunk(0).buffers()[1].address == bronze.column("bid_px").chunk(0).buffers()[1].address
    plain = _books([T0])  # built by hand: `kind` nullable
    assert input_tables.normalise(plain, "books").schema.equals(input_tables.SCHEMAS["books"])
    fmt1 = plain.drop_columns(["kind", "prev_nonce"])  # format 1: filled
    got = input_tables.normalise(fmt1, "books")
    assert got.schema.equals(input_tables.SCHEMAS["books"]) and got.column("kind").to_pylist() == ["snapshot"]


def test_a_null_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown row kind"):
        FeatureEngine().process(_books([T0, T0 + 100], kind=[None, "snapshot"]))


def _nullable_kind_checkpoint(blob: bytes) -> bytes:
    """`blob` as the version before input_tables wrote it: held books with `kind` nullable."""
    payload = json.loads(blob)
    for key in ("pending_books", "untimed_books"):
        table = pa.ipc.open_stream(base64.b64decode(payload[key])).read_all()
        fields = [f.with_nullable(True) for f in table.schema]
        table = pa.Table.from_arrays(table.columns, schema=pa.schema(fields))
        assert table.schema.field("kind").nullable
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        payload[key] = base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")
    return json.dumps(payload).encode()


def test_checkpoints_store_books_with_every_field_nullable_as_before():
    """What an earlier version wrote and reads: a downgrade must not find a not-null `kind`."""
    engine = FeatureEngine()
    engine.process(_books([T0, T0 + 100, T0 + 100], extra=True))  # the last millisecond is held back
    payload = json.loads(engine.get_state())
    held = pa.ipc.open_stream(base64.b64decode(payload["pending_books"])).read_all()
    assert held.num_rows == 2 and all(f.nullable for f in held.schema)


def test_a_checkpoint_with_nullable_kind_restores_to_the_same_rows():
    times = [T0 + 100 * i for i in range(40)]
    books, trades = _books(times, extra=True), _trades([t + 50 for t in times[::3]])
    opts = {"hf_emit_interval": 0, "bar_durations": [1]}
    whole = FeatureEngine(opts)
    one = concat_results([whole.process(books, trades), whole.flush()])
    first = FeatureEngine(opts)
    part = first.process(books.slice(0, 20), trades.slice(0, 6))  # books after its last trade are held back
    assert json.loads(first.get_state())["pending_books"]
    again = FeatureEngine.from_state(_nullable_kind_checkpoint(first.get_state()), opts)
    rest = again.process(books.slice(20), trades.slice(6))
    chunked = concat_results([part, rest, again.flush()])
    assert one.hf.num_rows > 20 and one.bars[1].num_rows
    assert _same(chunked.hf, one.hf) and chunked.bars.keys() == one.bars.keys()
    assert all(_same(chunked.bars[d], one.bars[d]) for d in one.bars)


def _same(a: pa.Table, b: pa.Table) -> bool:
    """Same schema and values, NaN equal to NaN (compared as their IPC bytes)."""
    def ipc(t):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as writer:
            writer.write_table(t.combine_chunks())
        return sink.getvalue().to_pybytes()
    return ipc(a) == ipc(b)
