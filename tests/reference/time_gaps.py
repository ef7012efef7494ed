"""The time-gap reset rule from its definition (docs/features.md, "Resets").

`etl.max_gap_seconds`: a row of a stream (a symbol's book rows, or its valid trades) that
comes more than the threshold after the previous row of that stream, in exchange time, is
a reset at its own time.  Written as the pairwise definition over the whole, time-sorted
stream; the product code keeps a running clock across chunks instead.
"""
from __future__ import annotations


def gap_resets(times: list[int], max_gap_ms: int | None) -> list[int]:
    """Times t[i] with t[i] - t[i-1] > max_gap_ms (times sorted); none when max_gap_ms is None."""
    if max_gap_ms is None:
        return []
    return [b for a, b in zip(times, times[1:]) if b - a > max_gap_ms]
