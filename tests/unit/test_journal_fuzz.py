"""Damaged journals never stop recovery (issue 17 item 2).

A flipped length byte used to raise ArrowMemoryError ("malloc of size
95657511620032") or ArrowNotImplementedError out of `iter_journal`, and the
collector crash-looped at start-up.  Now each IPC message's declared lengths
are checked against the bytes left before decoding, any decode failure is
"torn from here", and an unreadable header sends the segment to failed/.
Hundreds of fixed-seed byte flips: recovery never raises and every batch that
lies wholly before the damaged byte survives.
"""
from __future__ import annotations

import random

import pyarrow.parquet as pq
import pytest

from fluxforge.bronze.active_segment import ActiveSegment
from fluxforge.bronze.journal import JournalScan, JournalUnreadable, iter_journal, schema_header
from fluxforge.bronze.recovery import recover_active_segments
from fluxforge.bronze.schemas import ORDERBOOK, TRADES
from fluxforge.bronze.segments import REASON, SegmentStore
from tests.unit.test_journal import trades_batch, write_journal
from tests.unit.test_recovery import book_batch

N_BATCHES = 6


def _flip(path, rng) -> int:
    data = bytearray(path.read_bytes())
    pos = rng.randrange(len(data))
    data[pos] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))
    return pos


def _intact_before(offsets, pos) -> int:
    """Batches whose bytes all lie before `pos` (offsets[i]..offsets[i+1] is batch i)."""
    return sum(1 for end in offsets[1:] if end <= pos)


@pytest.mark.parametrize("seed", range(400))
def test_flipped_byte_in_a_journal_never_raises_and_keeps_intact_batches(tmp_path, seed):
    rng = random.Random(seed)
    p = tmp_path / "trades.arrows"
    batches = [trades_batch(i * 7, 7) for i in range(N_BATCHES)]
    offsets = write_journal(p, batches)
    pos = _flip(p, rng)
    scan = JournalScan()
    try:
        got = list(iter_journal(p, TRADES, scan))
    except JournalUnreadable:
        assert pos < len(schema_header(TRADES)), f"a flip at {pos} (past the header) made the journal unreadable"
        return
    keep = _intact_before(offsets, pos)
    assert len(got) >= keep
    for b, want in zip(got[:keep], batches[:keep]):
        assert b.equals(want)
    assert scan.valid_bytes <= offsets[-1] and scan.batches == len(got)


@pytest.mark.parametrize("field", ["metadata_length", "body_length"])
def test_huge_declared_length_is_torn_not_a_giant_allocation(tmp_path, field):
    p = tmp_path / "trades.arrows"
    offsets = write_journal(p, [trades_batch(i * 7, 7) for i in range(3)])
    data = bytearray(p.read_bytes())
    at = offsets[1]                                   # the second batch's message
    if field == "metadata_length":
        data[at + 4:at + 8] = (0x7FFFFFF8).to_bytes(4, "little")
    else:
        meta_len = int.from_bytes(data[at + 4:at + 8], "little")
        meta = bytes(data[at + 8:at + 8 + meta_len])
        body = (offsets[2] - offsets[1]) - 8 - meta_len
        k = meta.find(body.to_bytes(8, "little", signed=True))
        assert k >= 0
        data[at + 8 + k:at + 8 + k + 8] = (95657511620032).to_bytes(8, "little")
    p.write_bytes(bytes(data))
    scan = JournalScan()
    got = list(iter_journal(p, TRADES, scan))
    assert len(got) == 1 and scan.torn_batches == 1 and scan.torn_bytes == len(data) - offsets[1]


@pytest.mark.parametrize("seed", range(150))
def test_recovery_of_a_damaged_active_segment_never_raises(tmp_path, seed):
    rng = random.Random(10_000 + seed)
    store = SegmentStore(tmp_path / "segments").ensure()
    seg = ActiveSegment.create(store, "pi01")
    written = {"trades": [trades_batch(i * 5, 5) for i in range(4)],
               "orderbook": [book_batch(i * 3, 3) for i in range(3)]}
    offsets = {}
    for channel, batches in written.items():
        offsets[channel] = [seg.journals[channel].size]
        for b in batches:
            seg.write(channel, b)
            offsets[channel].append(seg.journals[channel].size)
    seg.close()
    channel = rng.choice(sorted(written))
    pos = _flip(seg.journals[channel].path, rng)
    report = recover_active_segments(store)                       # must not raise
    assert not store.list("active")
    if report.failed:
        assert pos < len(schema_header(ORDERBOOK if channel == "orderbook" else TRADES))
        assert (report.failed[0] / REASON).read_text().startswith("recovery failed:")
        return
    ready = report.recovered[0]
    for ch, batches in written.items():
        table = pq.read_table(ready / f"{ch}.parquet")
        keep = _intact_before(offsets[ch], pos) if ch == channel else len(batches)
        want = batches[:keep]
        assert table.num_rows >= sum(b.num_rows for b in want)
        head = table.slice(0, sum(b.num_rows for b in want)).to_pylist()
        assert head == [row for b in want for row in b.to_pylist()]
