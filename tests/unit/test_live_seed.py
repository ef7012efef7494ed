"""The replay ring's seeding reads only the row groups of a part file that reach the replay window
(etl/live_seed.py `_rows_since`): a file compaction merged holds a day of one stream, and a restart
after midnight wants its last minutes.  Shown by making the older row groups unreadable: a whole read
fails, the seeding's does not, and it returns exactly the rows at or after the window's start."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from fluxforge.etl.live_seed import _rows_since

T0 = 1_723_161_600_000
GROUP = 1_000


def _day_file(path, statistics=True):
    n = 4 * GROUP
    table = pa.table({"timestamp": pa.array([T0 + 90 * i for i in range(n)], pa.timestamp("ms", tz="UTC")),
                      "mid": pa.array([100.0 + i / 1000 for i in range(n)]),
                      "nonce": pa.array(range(n), pa.int64())})
    pq.write_table(table, path, row_group_size=GROUP, compression="zstd", write_statistics=statistics)
    return table


def _since(table, from_ms):
    return table.filter(pc.greater_equal(pc.cast(table.column("timestamp"), pa.int64()), from_ms))


def _spoil_row_groups(path, groups):
    """Overwrite the column chunks (data pages) of `groups` with junk, leaving the footer intact."""
    md = pq.ParquetFile(path).metadata
    data = bytearray(path.read_bytes())
    for g in groups:
        for c in range(md.num_columns):
            chunk = md.row_group(g).column(c)
            start = chunk.dictionary_page_offset or chunk.data_page_offset
            data[start:start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))


def test_only_the_row_groups_that_reach_the_window_are_read(tmp_path):
    path = tmp_path / "part-a--b.parquet"
    table = _day_file(path)
    from_ms = T0 + 90 * (2 * GROUP + 17)  # inside the third row group
    _spoil_row_groups(path, [0, 1])
    with pytest.raises((OSError, pa.ArrowException)):
        pq.read_table(path)  # the spoiled groups bite a whole read
    got = _rows_since(path, from_ms)
    assert got.equals(_since(table, from_ms)) and got.num_rows == 2 * GROUP - 17
    assert _rows_since(path, T0 + 90 * 4 * GROUP).num_rows == 0  # after the file: no group read


def test_a_group_whose_newest_row_is_the_window_start_is_read(tmp_path):
    path = tmp_path / "part-a--b.parquet"
    table = _day_file(path)
    _spoil_row_groups(path, [0])
    from_ms = T0 + 90 * (2 * GROUP - 1)  # the second group's last row
    got = _rows_since(path, from_ms)
    assert got.equals(_since(table, from_ms)) and got.num_rows == 2 * GROUP + 1


def test_a_file_without_statistics_is_read_whole(tmp_path):
    path = tmp_path / "part-a.parquet"
    table = _day_file(path, statistics=False)
    for from_ms in (T0 - 1, T0 + 90 * (GROUP + 5), T0 + 90 * 4 * GROUP):
        assert _rows_since(path, from_ms).equals(_since(table, from_ms))
