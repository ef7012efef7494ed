"""JournalWriter / iter_journal: every complete batch survives, a torn tail is dropped and counted."""
from __future__ import annotations

import os

import pyarrow as pa
import pytest

from fluxforge.bronze.schemas import EVENTS, ORDERBOOK, TRADES
from fluxforge.bronze.journal import JournalUnreadable, JournalWriter, read_journal, schema_header


def trades_batch(start: int, n: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({
        "exchange": ["binance"] * n,
        "symbol": ["BTC/USDT"] * n,
        "timestamp": list(range(start, start + n)),
        "recv_ns": [i * 1000 for i in range(start, start + n)],
        "trade_id": [str(i) for i in range(start, start + n)],
        "price": [100.0 + i for i in range(n)],
        "amount": [1.0] * n,
        "side": ["buy", "sell"] * (n // 2) + ["buy"] * (n % 2),
    }, schema=TRADES)


def write_journal(path, batches):
    j = JournalWriter(path, TRADES)
    offsets = [j.size]
    for b in batches:
        j.write_batch(b)
        offsets.append(j.size)
    j.close()
    return offsets


def test_round_trip_all_batches(tmp_path):
    p = tmp_path / "trades.arrows"
    batches = [trades_batch(i * 10, 10) for i in range(5)]
    write_journal(p, batches)
    table, scan = read_journal(p, TRADES)
    assert table.num_rows == 50
    assert table.column("timestamp").to_pylist() == list(range(50))
    assert (scan.torn_batches, scan.torn_bytes, scan.batches) == (0, 0, 5)


def test_header_is_durable_before_any_batch(tmp_path):
    p = tmp_path / "events.arrows"
    j = JournalWriter(p, EVENTS)
    assert p.read_bytes() == schema_header(EVENTS)
    table, scan = read_journal(p, EVENTS)
    assert table.num_rows == 0 and scan.torn_batches == 0
    j.close()


@pytest.mark.parametrize("cut", [1, 7, 64, -1])
def test_torn_tail_is_dropped_and_counted(tmp_path, cut):
    p = tmp_path / "trades.arrows"
    offsets = write_journal(p, [trades_batch(i * 10, 10) for i in range(4)])
    # cut the last batch short at several places
    end = offsets[-1] - 1 if cut == -1 else offsets[-2] + cut
    os.truncate(p, end)
    table, scan = read_journal(p, TRADES)
    assert table.num_rows == 30
    assert scan.torn_batches == 1 and scan.torn_bytes == end - offsets[-2]


def test_zero_filled_tail_after_power_cut(tmp_path):
    p = tmp_path / "trades.arrows"
    write_journal(p, [trades_batch(0, 10), trades_batch(10, 10)])
    with open(p, "ab") as f:
        f.write(b"\0" * 4096)
    table, scan = read_journal(p, TRADES)
    assert table.num_rows == 20 and scan.torn_batches == 1 and scan.torn_bytes == 4096


def test_truncated_header_is_an_empty_journal(tmp_path):
    p = tmp_path / "trades.arrows"
    p.write_bytes(schema_header(TRADES)[:50])
    table, scan = read_journal(p, TRADES)
    assert table.num_rows == 0 and scan.torn_batches == 1


def test_garbage_header_is_unreadable(tmp_path):
    p = tmp_path / "trades.arrows"
    p.write_bytes(b"this is not arrow at all" * 100)
    with pytest.raises(JournalUnreadable):
        read_journal(p, TRADES)


def test_wrong_schema_is_unreadable(tmp_path):
    p = tmp_path / "orderbook.arrows"
    write_journal(p, [trades_batch(0, 3)])
    with pytest.raises(JournalUnreadable, match="schema does not match"):
        read_journal(p, ORDERBOOK)


def test_failed_write_rolls_back_to_last_complete_batch(tmp_path, monkeypatch):
    """ENOSPC half-way through a batch must not leave garbage inside the journal."""
    import errno

    import fluxforge.bronze.journal as journal

    p = tmp_path / "trades.arrows"
    j = JournalWriter(p, TRADES)
    j.write_batch(trades_batch(0, 10))
    good = j.size
    real_write = os.write
    calls = {"n": 0}

    def short_then_enospc(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[:100]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal.os, "write", short_then_enospc)
    with pytest.raises(OSError):
        j.write_batch(trades_batch(10, 10))
    monkeypatch.setattr(journal.os, "write", real_write)
    assert os.path.getsize(p) == good == j.size
    j.write_batch(trades_batch(20, 10))  # the journal keeps working afterwards
    j.close()
    table, scan = read_journal(p, TRADES)
    assert table.column("timestamp").to_pylist() == list(range(10)) + list(range(20, 30))
    assert scan.torn_batches == 0


def test_journal_tail_returns_each_complete_batch_once_and_never_a_torn_one(tmp_path):
    from fluxforge.bronze.journal import JournalTail

    path, spare = tmp_path / "trades.arrows", tmp_path / "spare.arrows"
    writer = JournalWriter(path, TRADES)
    tail = JournalTail(path, TRADES)
    assert tail.read() == []                       # the schema header only
    writer.write_batch(trades_batch(0, 5))
    writer.write_batch(trades_batch(5, 3))
    assert [b.num_rows for b in tail.read(max_rows=1)] == [5]  # at least one batch, then up to max_rows
    assert [b.num_rows for b in tail.read()] == [3] and tail.rows == 8
    assert tail.read() == []
    # the next batch lands in two writes: its first half is a torn tail, not returned
    other = JournalWriter(spare, TRADES)
    other.write_batch(trades_batch(8, 4))
    frame = spare.read_bytes()[len(schema_header(TRADES)):]
    writer.close()
    with open(path, "ab") as f:
        f.write(frame[:len(frame) // 2])
    assert tail.read() == [] and tail.rows == 8
    with open(path, "ab") as f:
        f.write(frame[len(frame) // 2:])
    got = tail.read()
    assert [b.column("trade_id").to_pylist() for b in got] == [["8", "9", "10", "11"]] and tail.rows == 12
    # what the tail returned is what recovery keeps
    table, scan = read_journal(path, TRADES)
    assert table.num_rows == 12 and scan.torn_batches == 0
