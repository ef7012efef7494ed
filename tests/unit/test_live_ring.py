"""The replay ring against a model of its rule, and its memory: a few tables per key, not one per chunk.

The model keeps every chunk as published and applies the documented bounds (docs/live.md:
per product and symbol, `replay_minutes` of exchange time and at most `replay_rows` rows,
the oldest chunk cut to its newest rows when it straddles the row bound); the ring must
replay exactly its rows, chunk by chunk in publish order, from any point.  Random chunks
of 1-5 rows for several keys, interleaved, with times that jitter backwards.
"""
import math
import random
from collections import deque

import pyarrow as pa
from structlog.testing import capture_logs

from fluxforge.live.chunk import Chunk
from fluxforge.live.ring import MAX_LEVEL, RecentRows
from fluxforge.features import table_blocks
from fluxforge.features.table_blocks import FANOUT

TS = pa.timestamp("ms", tz="UTC")
KEYS = [("hf", "binance", "BTC/USDT"), ("hf", "binance", "ETH/USDT"), ("bars/interval=1s", "okx", "BTC/USDT")]


def _table(exchange: str, symbol: str, times: list[int], seq: int, columns: int = 3) -> pa.Table:
    cols = {"exchange": [exchange] * len(times), "symbol": [symbol] * len(times),
            "timestamp": pa.array(times, pa.int64()).cast(TS), "seq": [seq] * len(times)}
    cols.update({f"f{i}": [float(t % 97) + i for t in times] for i in range(columns)})
    return pa.table(cols)


class _Model:
    """Every chunk as published, the bounds applied by the rule."""

    def __init__(self, minutes: float, max_rows: int):
        self.window, self.max_rows, self.rings = int(minutes * 60_000), max_rows, {}

    def add(self, c: Chunk) -> None:
        ring = self.rings.setdefault(c.key, deque())
        ring.append((c.seq, c.table))
        ms = lambda t: t.column("timestamp").cast(pa.int64()).to_pylist()  # noqa: E731
        rows = sum(t.num_rows for _, t in ring)
        newest = max(max(ms(ring[0][1])), max(ms(ring[-1][1])))
        while rows - ring[0][1].num_rows >= self.max_rows or max(ms(ring[0][1])) < newest - self.window:
            rows -= ring.popleft()[1].num_rows
        if rows > self.max_rows:
            seq, t = ring[0]
            ring[0] = (seq, t.slice(rows - self.max_rows))

    def since(self, from_ms: int, keys) -> list[tuple[int, list]]:
        out = []
        for k in keys:
            for seq, t in self.rings.get(k, ()):
                ms = t.column("timestamp").cast(pa.int64()).to_pylist()
                rows = [r for r, m in zip(t.to_pylist(), ms) if m >= from_ms]
                if rows:
                    out.append((seq, rows))
        return sorted(out, key=lambda x: x[0])


def test_the_ring_replays_what_the_rule_keeps():
    rng = random.Random(11)
    for minutes, max_rows in ((0.5, 40), (2.0, 1000), (0.05, 7)):
        ring, model = RecentRows(minutes, max_rows), _Model(minutes, max_rows)
        now = {k: 1_733_000_000_000 for k in KEYS}
        seq = 0
        while seq < 1499:
            # a publish: one key's chunk, or several keys' of one product in one table (the ETL's)
            first = rng.choice(KEYS)
            keys = [first] + [k for k in KEYS if k != first and k[0] == first[0] and rng.random() < 0.6]
            parts = []
            for key in keys:
                now[key] += rng.randint(0, 400)
                times = sorted(now[key] - rng.randint(0, 300) for _ in range(rng.randint(1, 5)))
                parts.append((key, _table(key[1], key[2], times, seq + 1 + len(parts))))
            rows = pa.concat_tables([t for _, t in parts])
            chunks, offset = [], 0
            for key, t in parts:
                seq += 1
                chunks.append(Chunk(seq, *key, rows.slice(offset, t.num_rows), False))
                offset += t.num_rows
            if len(chunks) == 1 and rng.random() < 0.5:
                ring.add(chunks[0])
            else:
                ring.add_all(chunks, rows)
            for chunk in chunks:
                model.add(chunk)
            if seq % 97 < len(chunks) or seq >= 1499:
                lo = min(now.values()) - 200_000
                for from_ms in (0, rng.randint(lo, max(now.values())), max(now.values())):
                    got = [(c.seq, c.replay, c.key, c.table.to_pylist()) for c in ring.since(from_ms, ring.keys())]
                    want = model.since(from_ms, ring.keys())
                    assert [(s, rows) for s, _, _, rows in got] == want, (minutes, max_rows, seq, from_ms)
                    assert all(replay for _, replay, _, _ in got)
                assert ring.rows == sum(t.num_rows for r in model.rings.values() for _, t in r)
                # the span /metrics shows: each key's oldest chunk's first row to its newest's last (the
                # hub's chunks of a key come in time order; these random ones need not)
                ms = lambda t: t.column("timestamp").cast(pa.int64()).to_pylist()  # noqa: E731
                ends = [(min(ms(r[0][1])), max(ms(r[-1][1]))) for r in model.rings.values() if r]
                assert ring.span_ms() == max(e for _, e in ends) - min(f for f, _ in ends)


def test_one_row_chunks_are_held_in_a_few_tables():
    """A 170-column hf row a flush per symbol, for the default 15 minutes: bounded tables per key."""
    ring = RecentRows(15.0, 1000)
    n = 900
    for i in range(n):
        for s, key in enumerate(KEYS[:2]):
            ring.add(Chunk(2 * i + s, *key, _table(key[1], key[2], [1_733_000_000_000 + 1000 * i], i, 170), False))
    for key in KEYS[:2]:
        assert [len(s.chunks) for s in ring._streams[key]] == [n]
    [store] = ring._stores.values()  # both keys' rows: one product, one schema
    assert len(store.tables) <= (FANOUT - 1) * MAX_LEVEL + math.ceil(2 * n / FANOUT ** MAX_LEVEL), len(store.tables)
    assert 0 < sum(table_blocks.is_loose(t) for t in store.tables) < FANOUT  # the rest: one IPC buffer each
    assert ring.rows == 2 * n


def test_a_publish_of_many_keys_is_held_once():
    """The ETL publishes a product's rows of all symbols in one table: the ring holds that table
    once (merged with the next ones), not a table per symbol; each key replays its own rows."""
    ring = RecentRows(15.0, 1000)
    keys = [("hf", "binance", f"S{i}/USDT") for i in range(20)]
    n = 64
    for i in range(n):
        parts = [_table(k[1], k[2], [1_733_000_000_000 + 1000 * i], i, 170) for k in keys]
        rows = pa.concat_tables(parts)
        ring.add_all([Chunk(20 * i + j, *k, rows.slice(j, 1), False) for j, k in enumerate(keys)], rows)
    [store] = ring._stores.values()
    assert len(store.tables) == n // FANOUT  # 16 publishes a block
    for j, k in enumerate(keys):
        got = ring.since(0, [k])
        assert [c.seq for c in got] == [20 * i + j for i in range(n)]
        assert [r["symbol"] for c in got for r in c.table.select(["symbol"]).to_pylist()] == [k[2]] * n


def _steady(seconds: int, wide=(0, 1)) -> list[Chunk]:
    """A chunk of one row per key and second, in publish order, cut from one table per key as the hub
    cuts a publication; keys at index `wide` have hf's 170 columns."""
    sources = [_table(key[1], key[2], [1_733_000_000_000 + 1000 * i for i in range(seconds)], 0,
                      170 if k in wide else 3) for k, key in enumerate(KEYS)]
    return [Chunk(len(KEYS) * i + k + 1, *key, sources[k].slice(i, 1), False)
            for i in range(seconds) for k, key in enumerate(KEYS)]


def test_the_byte_bound_drops_the_oldest_rows_of_any_key_first():
    """`replay_mb`: all keys together stay within it; what goes is each key's oldest chunks, and the
    keys keep about the same minutes (by time, not one share per key: wide hf rows would keep fewer)."""
    free, bound = RecentRows(60.0, 100_000), RecentRows(60.0, 100_000, max_mb=4.0)
    with capture_logs() as logs:
        for chunk in _steady(2405):  # (not a multiple of FANOUT: loose rows at the end)
            for ring in (free, bound):
                ring.add(chunk)
            assert bound.bytes <= bound.max_bytes
    streams = [s for ss in bound._streams.values() for s in ss]
    assert bound.bytes == sum(s.bytes for s in bound._stores.values()) + sum(s.bytes for s in streams)
    for s in bound._stores.values():  # what `bytes` keeps count of, counted again
        assert s.packed == sum(t.buffer.size for t in s.tables if isinstance(t, table_blocks.Packed))
        assert s.loose == sum(t.num_rows for t in s.tables if table_blocks.is_loose(t))
    assert free.bytes > 1.5 * bound.max_bytes and bound.bounded  # the bound held, not the other two
    for key in KEYS:  # a suffix of what the unbounded ring keeps, row for row
        got = [(c.seq, c.table.to_pylist()) for c in bound.since(0, [key])]
        want = [(c.seq, c.table.to_pylist()) for c in free.since(0, [key])]
        assert 0 < len(got) < len(want) and got == want[-len(got):], key
    fronts = [bound._streams[key][0].chunks[0].first_ms for key in KEYS]
    assert max(fronts) - min(fronts) <= 1000, fronts  # the same minutes for wide and narrow keys
    assert [e["event"] for e in logs if e["event"] == "live_replay_bounded"] == ["live_replay_bounded"]
    assert 0 < bound.span_ms() < free.span_ms() == 2404 * 1000  # what the bound leaves, in time


def test_the_byte_bound_bounds_the_memory_the_ring_takes():
    """What Arrow allocates for the ring's rows stays within `replay_mb` (the estimate is not low; +5 %:
    the allocator's alignment).  The tables as published are slices of the publication: no allocation."""
    chunks = _steady(2400)
    ring = RecentRows(60.0, 100_000, max_mb=4.0)
    before = pa.total_allocated_bytes()
    for chunk in chunks:
        ring.add(chunk)
    assert ring.bounded
    assert pa.total_allocated_bytes() - before <= 1.05 * ring.max_bytes


def test_chunk_places_behave_as_a_deque_in_a_few_bytes_each():
    """`_Chunks` (a key's held chunks as flat integer columns) against a deque of `_Held`, through
    appends, pops past its compaction, trims of the oldest and iteration; and its memory a chunk."""
    import threading
    import tracemalloc

    from fluxforge.live.ring import _Chunks, _Held

    rng = random.Random(5)
    chunks, model, seq = _Chunks(), deque(), 0
    fields = ("seq", "replay", "first_ms", "last_ms", "start", "rows")
    as_tuple = lambda h: tuple(getattr(h, f) for f in fields)  # noqa: E731
    for step in range(20_000):
        op = rng.random()
        if op < 0.55 or not model:
            seq += 1
            h = _Held(seq, rng.random() < 0.1, 1_733_000_000_000 + seq, 1_733_000_000_000 + seq + 5, seq * 3, rng.randint(1, 4))
            chunks.add(*(getattr(h, f) for f in fields))
            model.append(h)
        elif op < 0.95:
            assert as_tuple(chunks[0]) == as_tuple(model[0])
            assert chunks.drop_oldest() == model.popleft().rows
        else:
            h = _Held(model[0].seq, model[0].replay, model[0].first_ms + 1, model[0].last_ms, model[0].start + 1, 1)
            chunks[0] = model[0] = h
        assert len(chunks) == len(model)
        if model:
            assert as_tuple(chunks[0]) == as_tuple(model[0]) and as_tuple(chunks[-1]) == as_tuple(model[-1])
            assert chunks.oldest() == (model[0].rows, model[0].last_ms, model[0].start)
            assert chunks.newest_last_ms() == model[-1].last_ms
        if step % 997 == 0:
            assert [as_tuple(h) for h in chunks] == [as_tuple(h) for h in model]
    while model:
        assert as_tuple(chunks[0]) == as_tuple(model[0])
        assert chunks.drop_oldest() == model.popleft().rows
    assert len(chunks) == 0 and list(chunks) == []
    for empty in (lambda: chunks[0], chunks.drop_oldest, chunks.oldest, chunks.newest_last_ms):
        try:
            empty()
        except IndexError:
            continue
        raise AssertionError(f"{empty.__name__} of no chunks")

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    many = _Chunks()
    for i in range(100_000):
        many.add(10 ** 6 + i, False, 1_733_000_000_000 + i, 1_733_000_000_000 + i, 10 ** 6 + i, 1)
    per_chunk = (tracemalloc.get_traced_memory()[0] - before) / 100_000
    tracemalloc.stop()
    assert per_chunk < 2 * _Chunks.BYTES, per_chunk  # (arrays grow by over-allocating; a _Held took ~224)

    # the metrics scrape reads the span from another thread while the loop adds and drops
    ring, stop, seen, errors = RecentRows(0.05, 50), threading.Event(), [], []

    def scrape():  # a read, then the GIL given up (a spinning reader would hold the adds to one per 5 ms)
        while not stop.wait(0.0002):
            try:
                seen.append(ring.span_ms())
            except Exception as e:  # noqa: BLE001
                errors.append(e)
    reader = threading.Thread(target=scrape)
    reader.start()
    try:
        for i in range(12_000):  # > 1,024 pops a key: its arrays are cut (compacted) meanwhile
            key = KEYS[i % len(KEYS)]
            ring.add(Chunk(i + 1, *key, _table(key[1], key[2], [1_733_000_000_000 + 10 * i], i), False))
    finally:
        stop.set()
        reader.join()
    assert not errors and seen and all(0 <= v <= 3_000 + 10 * len(KEYS) for v in seen)


def test_a_publish_of_many_streams_cut_into_runs_is_each_run_as_a_chunk_of_its_own():
    # Chunk.runs (the hub's one table for all streams of a publish) gives each run the rows, times and
    # size that a chunk of that run's rows alone has; times jitter backwards, one is null (older than any)
    rng = random.Random(5)
    for _ in range(40):
        parts = [_table(e, s, [1_700_000_000_000 + rng.randrange(-50, 50) for _ in range(rng.randrange(1, 5))], i)
                 for i, (_, e, s) in enumerate(rng.sample(KEYS, rng.randrange(1, len(KEYS) + 1)))]
        if rng.random() < 0.3:
            t = parts[0]
            parts[0] = t.set_column(t.schema.get_field_index("timestamp"), "timestamp",
                                    pa.array([None] + t.column("timestamp").to_pylist()[1:], TS))
        table = pa.concat_tables(parts)
        runs, offset = [], 0
        for part in parts:
            runs.append((part.column("exchange")[0].as_py(), part.column("symbol")[0].as_py(), offset, part.num_rows))
            offset += part.num_rows
        got = Chunk.runs(10, "hf", table, runs, False)
        want = [Chunk(10 + i, "hf", e, s, part, False) for i, ((e, s, _, _), part) in enumerate(zip(runs, parts))]
        fields = ("seq", "product", "exchange", "symbol", "replay", "rows", "first_ms", "last_ms", "bytes")
        assert [[getattr(c, f) for f in fields] for c in got] == [[getattr(c, f) for f in fields] for c in want]
        assert all(g.table.equals(w.table) for g, w in zip(got, want))
    table = _table("binance", "BTC/USDT", [1, 2, 3], 0)
    btc = ("binance", "BTC/USDT")
    for bad in ([(*btc, 0, 2)], [(*btc, 1, 2)], [(*btc, 0, 2), ("okx", "BTC/USDT", 1, 1)],
                [(*btc, 0, 3), ("okx", "X", 3, 0)]):
        try:
            Chunk.runs(1, "hf", table, bad, False)
        except ValueError:
            continue
        raise AssertionError(f"runs {bad} accepted")
    assert Chunk.runs(1, "hf", table, [], False) == []


def test_consecutive_runs_of_one_publish_are_one_span_and_nothing_else_is_merged():
    # chunk.spans (what a subscriber sends as one encoding): runs of one publish that follow each
    # other in the queue and in the table; not runs of two publishes, not across a gap or a marker,
    # not a chunk with its own table (a replay's)
    from fluxforge.live.chunk import spans
    parts = [_table(e, s, [1_700_000_000_000 + i], i) for i, (_, e, s) in enumerate(KEYS)]
    table = pa.concat_tables(parts)
    runs = [(p.column("exchange")[0].as_py(), p.column("symbol")[0].as_py(), i, 1) for i, p in enumerate(parts)]
    a, b = Chunk.runs(1, "hf", table, runs, False), Chunk.runs(4, "hf", table, runs, False)
    own = Chunk(9, "hf", *KEYS[0][1:], parts[0], True)
    marker = object()

    def shape(items):
        names = {id(a[0].published): "a", id(b[0].published): "b"}
        return [(names[id(x[0])], x[1], x[2]) if isinstance(x, tuple) and id(x[0]) in names
                else "own" if isinstance(x, tuple) and x[0] is own.published else "marker" for x in spans(items)]

    assert shape(a) == [("a", 0, 3)]
    assert shape(a[:2] + b[2:]) == [("a", 0, 2), ("b", 2, 1)]
    assert shape([a[0], a[2]]) == [("a", 0, 1), ("a", 2, 1)]
    assert shape([a[0], marker, a[1], own, a[2]]) == [("a", 0, 1), "marker", ("a", 1, 1), "own", ("a", 2, 1)]
    span = spans(a)[0]
    for fmt in ("json", "arrow"):  # one encoding of the span, made once, of exactly its rows
        frames = span[0].frames(fmt, span[1], span[2])
        assert frames is span[0].frames(fmt, span[1], span[2])
        assert len(frames) == (3 if fmt == "json" else 1)
    assert a[1].frames("json") == span[0].frames("json", 0, 3)[1:2]
    assert a[1].plain().equals(parts[1])
    # held only while someone holds them (a subscriber, until its next write): a slow subscriber's
    # queued chunks of a publish do not keep the encodings of the spans others took
    frames = None
    assert len(span[0]._frames) == 0


def test_a_replay_of_every_stream_is_a_span_per_held_block():
    # RecentRows.since: whole chunks are runs of their held block, so a subscriber replaying every
    # stream sends one encoding per block (17 publishes: one merged block of 16, one loose), the
    # rows exactly those published, in publish order; a chunk cut at the replay point is a table of its own
    from fluxforge.live.chunk import spans
    ring, published = RecentRows(60, 10_000), []
    for i in range(17):
        parts = [_table(e, s, [1_700_000_000_000 + 1000 * i + k], i) for k, (_, e, s) in enumerate(KEYS)]
        table = pa.concat_tables(parts)
        runs = [(p.column("exchange")[0].as_py(), p.column("symbol")[0].as_py(), k, 1) for k, p in enumerate(parts)]
        ring.add_all(Chunk.runs(1 + 3 * i, "hf", table, runs, False), table)
        published.append(table)
    replay = ring.since(0, ring.keys())
    sent = spans(replay)
    assert [(x[1], x[2]) for x in sent] == [(0, 48), (0, 3)]
    rows = pa.concat_tables([x[0].plain().slice(x[1], x[2]) for x in sent])
    assert rows.equals(pa.concat_tables(published))
    later = ring.since(1_700_000_000_000 + 1000 * 16 + 1, ring.keys())  # the last publish but its first stream
    assert [(x[1], x[2]) for x in spans(later)] == [(1, 2)]
    two = _table(*KEYS[0][1:], [1_700_000_100_000, 1_700_000_100_500], 99)  # a chunk of two rows
    ring.add_all(Chunk.runs(100, "hf", two, [(*KEYS[0][1:], 0, 2)], False), two)
    straddled = ring.since(1_700_000_100_200, [KEYS[0]])
    assert [(c.published.table.num_rows, c.offset, c.rows) for c in straddled] == [(1, 0, 1)]  # its own table


def test_a_publish_with_the_publishers_runs_holds_what_one_the_hub_cuts_itself_holds(tmp_path):
    # LiveHub.publish(runs=...): the ETL names each stream's rows as it built the table; the hub then
    # holds and numbers the same chunks as when it finds the runs in the exchange and symbol columns
    from fluxforge.live.hub import LiveHub
    from fluxforge.live.settings import LiveConfig
    rng = random.Random(8)
    hubs = [LiveHub(LiveConfig(), socket_path=tmp_path / f"{i}.sock") for i in range(2)]
    for n in range(30):
        picked = rng.sample(KEYS[:2], rng.randrange(1, 3))
        parts = [_table(e, s, sorted(1_700_000_000_000 + 1000 * n + rng.randrange(900) for _ in range(rng.randrange(1, 4))), n)
                 for _, e, s in picked]
        table = pa.concat_tables(parts)
        hubs[0].publish("hf", table)
        hubs[1].publish("hf", table, runs=[((e, s), p.num_rows) for (_, e, s), p in zip(picked, parts)] + [(("x", "y"), 0)])
    got = [hub.ring.since(0, KEYS[:2]) for hub in hubs]
    assert [(c.seq, c.key, c.rows) for c in got[0]] == [(c.seq, c.key, c.rows) for c in got[1]] and len(got[0]) > 30
    assert all(a.table.equals(b.table) for a, b in zip(*got))
    assert hubs[0].counters == hubs[1].counters
    table = _table("binance", "BTC/USDT", [1, 2, 3], 0)
    for bad in ([(("binance", "BTC/USDT"), 2)], [(("binance", "BTC/USDT"), 2), (("binance", "BTC/USDT"), 1)]):
        try:
            hubs[1].publish("hf", table, runs=bad)
        except ValueError:
            continue
        raise AssertionError(f"runs {bad} accepted")
