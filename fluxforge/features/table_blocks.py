"""Many small Arrow tables held as a few compacted blocks.

Why: the live path makes a table per symbol, product and collector flush, a row or two
each.  An Arrow table costs about half a kilobyte per column however few its rows (its
column, chunk and buffer objects), so a 170-column hf row held as a table of its own
takes ~80 KB for its 1.4 KB of values.  Held for a whole segment (the live feeder's
outputs, until the segment job writes them) and for `etl.live.replay_minutes` (the
replay ring), one table per flush grew the live ETL by ~4.5 MB/s at 20 symbols: past the
unit's MemoryMax (448 MB) within two minutes.

`append` merges every FANOUT tables of one level into one of the next (a counter in base
FANOUT): n appended tables are held as at most FANOUT - 1 per level, O(log n) in all, and
each row is copied about log_FANOUT(n) times.  A merged table is kept `Packed`, as one
Arrow IPC buffer: few objects matter as much as few bytes -- with thousands of tables of
Arrow objects alive, everything the live ETL computed got slower as the heap filled (a
chunk's feed took twice as long after 20 minutes of held tables; as IPC buffers, no
longer).  `table()` reads one back (zero-copy).  The rows, their order, types and values
stay exactly what was appended.  Tables that cannot be concatenated (different schemas)
are left as they are.
"""
from __future__ import annotations

import pyarrow as pa

FANOUT = 16
_KEPT = 1 << 30  # the level of tables left unmerged: above any level a merge reaches


class Packed:
    """A merged table as one Arrow IPC stream buffer; `num_rows` without reading it."""

    __slots__ = ("buffer", "num_rows")

    def __init__(self, table: pa.Table):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        self.buffer, self.num_rows = sink.getvalue(), table.num_rows


def table(held: pa.Table | Packed) -> pa.Table:
    """What `append` holds, as a table."""
    return pa.ipc.open_stream(held.buffer).read_all() if isinstance(held, Packed) else held


def append(tables: list, levels: list[int], new: pa.Table, max_level: int | None = None) -> None:
    """Append `new` to `tables` (whose merge levels `levels` tracks, one per table, in step)
    and merge; `max_level`: tables of that level are not merged further (blocks stay small
    enough to be dropped whole from the front, as the replay ring does)."""
    tables.append(new)
    levels.append(0)
    # levels never increase towards the end: when the FANOUT-th last is the last one's, so are all between
    while len(levels) >= FANOUT and levels[-FANOUT] == levels[-1] != max_level:
        try:
            merged = Packed(pa.concat_tables([table(t) for t in tables[-FANOUT:]]).combine_chunks())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            levels[-FANOUT:] = [_KEPT] * FANOUT
            return
        level = levels[-1] + 1
        del tables[-FANOUT:], levels[-FANOUT:]
        tables.append(merged)
        levels.append(level)
