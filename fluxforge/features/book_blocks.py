"""Cutting time-sorted books and trades into blocks the feature kernels take one at a time; joining their outputs.

Why: `FeatureEngine` rebuilt a whole batch's books before computing its features, so a
million books were 640 MB of fresh level arrays whose page faults cost more than the
features themselves (bench/kernels.py).  Fed a block at a time, the same memory is reused
and the rows are the same: the cut falls between two milliseconds, so no reset a later block
finds (a resync, a time gap) can be due before an event of an earlier one.
"""
from __future__ import annotations

import numpy as np


def blocks(bts: np.ndarray, tts: np.ndarray, size: int) -> list[tuple[int, int, int, int]]:
    """(book start, book end, trade start, trade end) of each block of about `size` books.

    A block ends between two book times (never inside a millisecond) and takes the trades up to
    its last book's time; the last block takes every trade left.  Every reset of a later block is
    later than all of an earlier block's events, and the kernel keeps its state between calls,
    so the blocks give exactly the rows of one call (tests/unit/test_feature_blocks.py)."""
    n = len(bts)
    out, b0, t0 = [], 0, 0
    while True:
        b1 = n
        if n - b0 > size:
            b1 = int(np.searchsorted(bts, bts[b0 + size], side="left"))
            if b1 == b0:  # `size` books in one millisecond: the block ends after it
                b1 = int(np.searchsorted(bts, bts[b0], side="right"))
        t1 = len(tts) if b1 == n else int(np.searchsorted(tts, bts[b1 - 1], side="right"))
        out.append((b0, b1, t0, t1))
        if b1 == n:
            return out
        b0, t0 = b1, t1


def joined(parts: list[tuple], flushed: list[np.ndarray] | None = None) -> tuple:
    """The blocks' kernel outputs -- (hf block, emitted row indices in the batch, closed bars per
    duration) each -- as one call's, with the bars a flush closed (`flushed`) after the last's."""
    blocks, idxs, bars = zip(*parts)
    bars = [*bars, flushed] if flushed is not None else list(bars)
    block = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
    idx = idxs[0] if len(idxs) == 1 else np.concatenate(idxs)
    return block, idx, [p[0] if len(p) == 1 else np.concatenate(p) for p in zip(*bars)]
