"""Many small Arrow tables held as a few compacted blocks.

Why: the live path makes a table per symbol, product and collector flush, a row or two
each.  An Arrow table costs about half a kilobyte per column however few its rows (its
column, chunk and buffer objects), so a 170-column hf row held as a table of its own
takes ~80 KB for its 1.4 KB of values.  Held for a whole segment (the live feeder's
outputs, until the segment job writes them) and for `etl.live.replay_minutes` (the
replay ring), one table per flush grew the live ETL by ~4.5 MB/s at 20 symbols: past the
unit's MemoryMax (448 MB) within two minutes.

`append` merges every FANOUT tables of one level into one table of the next (a counter
in base FANOUT): n appended tables are held as at most FANOUT - 1 tables per level,
O(log n) in all, and each row is copied about log_FANOUT(n) times.  The rows, their
order, types and values stay exactly what was appended (a concatenation, one chunk per
column).  Tables that cannot be concatenated (different schemas) are left as they are.
"""
from __future__ import annotations

import pyarrow as pa

FANOUT = 8
_KEPT = 1 << 30  # the level of tables left unmerged: above any level a merge reaches


def append(tables: list, levels: list[int], table: pa.Table, max_level: int | None = None) -> None:
    """Append `table` to `tables` (whose merge levels `levels` tracks, one per table, in step)
    and merge; `max_level`: tables of that level are not merged further (blocks stay small
    enough to be dropped whole from the front, as the replay ring does)."""
    tables.append(table)
    levels.append(0)
    # levels never increase towards the end: when the FANOUT-th last is the last one's, so are all between
    while len(levels) >= FANOUT and levels[-FANOUT] == levels[-1] != max_level:
        try:
            merged = pa.concat_tables(tables[-FANOUT:]).combine_chunks()
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            levels[-FANOUT:] = [_KEPT] * FANOUT
            return
        level = levels[-1] + 1
        del tables[-FANOUT:], levels[-FANOUT:]
        tables.append(merged)
        levels.append(level)
