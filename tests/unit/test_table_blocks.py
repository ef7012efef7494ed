"""Small tables held as compacted blocks: the same rows, a few tables, a bounded block size.

Why: the live path holds a table per symbol, product and collector flush for a whole
segment and for the replay window; held one by one they grew the live ETL by megabytes a
second (features/table_blocks.py).  Random tables with nulls, NaN and strings.
"""
import math
import os
import random

import pyarrow as pa
from structlog.testing import capture_logs

from fluxforge.features import table_blocks
from fluxforge.features.table_blocks import FANOUT, SPILL_LEVEL


def _table(rng: random.Random, start: int, n: int) -> pa.Table:
    return pa.table({"timestamp": pa.array(range(start, start + n), pa.int64()),
                     "x": pa.array([rng.choice([None, math.nan, rng.random()]) for _ in range(n)], pa.float64()),
                     "s": pa.array([rng.choice([None, "a", "ü"]) for _ in range(n)], pa.string())})


def _rows(tables: list) -> list[dict]:
    return [r for t in tables for r in table_blocks.table(t).to_pylist()]


def _same(a: list[dict], b: list[dict]) -> bool:
    def norm(r):
        return {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
    return [norm(r) for r in a] == [norm(r) for r in b]


def test_appended_tables_keep_their_rows_in_few_tables():
    rng = random.Random(7)
    for n in (1, FANOUT - 1, FANOUT, FANOUT ** 2 + 3, 1500):
        tables, levels, appended, start = [], [], [], 0
        for _ in range(n):
            t = _table(rng, start, rng.randint(0, 3))
            start += t.num_rows
            appended.append(t)
            table_blocks.append(tables, levels, t)
        assert _same(_rows(tables), _rows(appended)), n
        assert all(table_blocks.table(t).schema == appended[0].schema for t in tables)
        # a counter in base FANOUT: at most FANOUT - 1 tables of each level
        assert len(tables) <= (FANOUT - 1) * (1 + math.floor(math.log(n, FANOUT))), (n, len(tables))
        # merged ones are one IPC buffer each, read back as one chunk per column
        assert all(isinstance(t, table_blocks.Packed) == (lv > 0) for t, lv in zip(tables, levels))
        assert all(table_blocks.table(t).column(0).num_chunks <= 1 for t in tables)
        assert levels == sorted(levels, reverse=True)


def test_max_level_bounds_a_table_to_fanout_to_that_power():
    rng = random.Random(8)
    tables, levels = [], []
    for i in range(1000):
        table_blocks.append(tables, levels, _table(rng, i, 1), max_level=2)
    assert max(t.num_rows for t in tables) == FANOUT ** 2 and sum(table_blocks.is_loose(t) for t in tables) < FANOUT
    assert sum(t.num_rows for t in tables) == 1000
    assert [r["timestamp"] for r in _rows(tables)] == list(range(1000))


def test_tables_that_do_not_concatenate_are_kept_as_they_are():
    rng = random.Random(9)
    tables, levels, appended = [], [], []
    for i in range(3 * FANOUT):
        t = _table(rng, i, 1)
        if i == 3:  # another schema among them: that run is left unmerged, the later ones merge
            t = t.set_column(1, "x", pa.array(["text"], pa.string()))
        appended.append(t)
        table_blocks.append(tables, levels, t)
    assert _same(_rows(tables), _rows(appended))
    assert len(tables) < len(appended)


def _in_memory_rows(tables: list) -> int:
    return sum(t.num_rows for t in tables if not isinstance(t, table_blocks.Spilled))


def test_with_a_spill_blocks_of_the_spill_level_go_to_an_unnamed_file_and_read_back(tmp_path):
    rng = random.Random(10)
    spill = table_blocks.Spill(tmp_path / "live")
    tables, levels, appended = [], [], []
    block = FANOUT ** SPILL_LEVEL
    for i in range(5 * block + 100):
        t = _table(rng, i, 1)
        appended.append(t)
        table_blocks.append(tables, levels, t, spill=spill)
        assert _in_memory_rows(tables) < block  # what stays in memory is bounded, whatever the length
    spilled = [t for t in tables if isinstance(t, table_blocks.Spilled)]
    assert len(spilled) == 5 and all(t.num_rows == block for t in spilled)  # not merged further
    assert spill.size == sum(t.length for t in spilled) > 0
    assert _same(_rows(tables), _rows(appended))
    assert os.listdir(tmp_path / "live") == []  # nameless: nothing left behind by a crash
    fd = spilled[0].file.fileno()
    assert os.fstat(fd).st_nlink == 0 and os.fstat(fd).st_size == spill.size


def test_a_full_disk_keeps_the_blocks_in_memory_and_spilling_resumes_when_there_is_room(mount_tmpfs):
    """A real full file system (a 1 MB tmpfs): no row lost, one warning, later blocks spilled again."""
    mnt = mount_tmpfs("1m")
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"x" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    rng = random.Random(11)
    spill = table_blocks.Spill(mnt)
    tables, levels, appended = [], [], []
    block = FANOUT ** SPILL_LEVEL
    with capture_logs() as logs:
        for i in range(4 * block):
            if i == 2 * block:
                filler.unlink()  # the operator makes room
            t = _table(rng, i, 2)
            appended.append(t)
            table_blocks.append(tables, levels, t, spill=spill)
    kinds = [type(t).__name__ for t, lv in zip(tables, levels) if lv == SPILL_LEVEL]
    assert kinds == ["Packed", "Packed", "Spilled", "Spilled"], kinds
    assert _same(_rows(tables), _rows(appended))
    events = [e["event"] for e in logs if e["event"].startswith("live_spill")]
    assert events == ["live_spill_failed", "live_spill_resumed"], events
    assert "No space left" in next(e["error"] for e in logs if e["event"] == "live_spill_failed")


def test_a_segment_fed_flush_by_flush_holds_its_outputs_in_few_tables(tmp_path):
    """The live path's feeder over 10 minutes of two symbols in 0.25 s flushes (2,400 chunks), with
    its spill: each (symbol, product) holds O(log n) tables, fewer than FANOUT ** SPILL_LEVEL
    chunks' tables' rows in memory, whose rows are every chunk's rows in order."""
    from etl_support import synthetic_market
    from live_support import flushes, same_rows
    from fluxforge.config import FeatureOptions
    from fluxforge.etl.engines import EngineBank
    from fluxforge.etl.segment_feed import SegmentFeeder, pieces, products

    m = synthetic_market(seconds=600.0, hz=10.0, trades_per_s=5.0)
    feeder = SegmentFeeder(EngineBank(FeatureOptions(bar_durations=[1, 5]), reorder_ms=1000), "seg",
                           spill=table_blocks.Spill(tmp_path))
    emitted: dict = {}
    chunks = 0
    for _, rows in flushes(m, 250_000_000):
        out = feeder.feed_chunk(pieces(rows["orderbook"], 16384), rows["trades"], rows["events"])
        chunks += 1
        for key, o in out.items():
            for product, tables in products(o):
                emitted.setdefault((key, product), []).extend(tables)
    assert chunks >= 2400
    held = {(key, product): tables for key, o in feeder.outputs.items() for product, tables in products(o)}
    assert held.keys() == emitted.keys() and len(held) >= 2 * 4
    bound = (FANOUT - 1) * (1 + math.floor(math.log(chunks, FANOUT)))
    for k, tables in held.items():
        assert len(tables) <= bound, (k, len(tables), len(emitted[k]))
        assert same_rows(_rows(tables), _rows(emitted[k])), k
    assert max(len(t) for t in emitted.values()) > 10 * bound  # what was held before: a table per chunk
    for key, o in feeder.held.items():
        for product, tables in products(o):  # the hf list of a 2,400-chunk segment: 9 blocks on disk
            spilled = sum(isinstance(t, table_blocks.Spilled) for t in tables)
            assert spilled == sum(t.num_rows > 0 for t in emitted[(key, product)]) // FANOUT ** 2, (key, product)
            assert sum(not isinstance(t, table_blocks.Spilled) for t in tables) < 2 * FANOUT


def test_blocks_share_their_schema_and_keep_dictionary_columns():
    """A block is a batch message referencing one schema object per distinct schema (not a stream
    repeating it: 9 kB of a 16-row hf block); a table with dictionary columns, which a batch message
    cannot carry, is kept as a stream and reads back the same."""
    wide = [pa.table({f"f{i}": pa.array([float(j + i)], pa.float64()) for i in range(160)}) for j in range(3 * FANOUT)]
    tables, levels = [], []
    for t in wide:
        table_blocks.append(tables, levels, t)
    packed = [t for t in tables if isinstance(t, table_blocks.Packed)]
    assert len(packed) == 3 and len({id(t.schema) for t in packed}) == 1
    schema_bytes = wide[0].schema.serialize().size
    for block in packed:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, block.schema) as writer:
            writer.write_table(block.read())
        assert block.buffer.size <= sink.getvalue().size - schema_bytes
    assert _rows(tables) == [r for t in wide for r in t.to_pylist()]

    rng = random.Random(3)
    keys = pa.array([rng.choice(["a", "b", None]) for _ in range(FANOUT + 2)]).dictionary_encode()
    coded = [pa.table({"k": keys.slice(i, 1), "v": [i]}) for i in range(FANOUT + 2)]  # one dictionary
    tables, levels = [], []
    for t in coded:
        table_blocks.append(tables, levels, t)
    assert isinstance(tables[0], table_blocks.Packed) and tables[0].schema is None
    assert table_blocks.table(tables[0]).schema == coded[0].schema
    assert _rows(tables) == [r for t in coded for r in t.to_pylist()]
