"""Output tables built once per chunk for every symbol, instead of once per symbol.

Why: the live path feeds every symbol a chunk per collector flush, and each call emits a
row or two per product.  An Arrow table of 160 columns costs about as much to build for
one row as for forty (an Arrow array per column), so building one per symbol and call was
a third of the live ETL's CPU.  Engines whose `deferred` flag is set (the ETL's
`SegmentFeeder` sets it) return a `PendingTable` -- the builder and its row-aligned inputs
-- and the feeder calls `build_all` on a chunk's pending tables: the inputs of all tables
of one builder are concatenated, built into one table, and each gets its slice.  Builders
are row-wise (a row's values depend on its own inputs only), so a slice has exactly the
values and types the table built alone would have.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True, slots=True)
class PendingTable:
    """A table not built yet: `build(*inputs)` makes it.  Tables with equal `key` are built by
    equivalent builders, so their inputs may be concatenated (numpy along `axes[i]`, an Arrow
    array where the axis is None) and built by any one of them."""

    key: Hashable
    build: Callable[..., pa.Table]
    inputs: tuple
    axes: tuple[int | None, ...]
    num_rows: int


def build_all(pending: list[PendingTable]) -> list[pa.Table]:
    """The tables of `pending`, in order: one build per key."""
    groups: dict[Hashable, list[int]] = {}
    for i, p in enumerate(pending):
        groups.setdefault(p.key, []).append(i)
    out: list[pa.Table | None] = [None] * len(pending)
    for idx in groups.values():
        for i, part in zip(idx, slices(build(merge([pending[i] for i in idx])), [pending[i].num_rows for i in idx])):
            out[i] = part
    return out  # type: ignore[return-value]


def build(pending: PendingTable) -> pa.Table:
    return pending.build(*pending.inputs)


def merge(parts: list[PendingTable]) -> PendingTable:
    """The rows of `parts` (all of one key) as one pending table, their inputs concatenated: what
    the live path holds of a segment's rows, a few numpy arrays where a table has an Arrow array
    per column (features/table_blocks.py)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    if any(p.key != first.key for p in parts):
        raise ValueError("pending tables of different builders cannot be merged")
    inputs = tuple(_concat([p.inputs[k] for p in parts], axis) for k, axis in enumerate(first.axes))
    return PendingTable(first.key, first.build, inputs, first.axes, sum(p.num_rows for p in parts))


def mergeable(items: list) -> bool:
    """Whether `items` are pending tables of one key (`merge` takes them)."""
    return all(isinstance(t, PendingTable) for t in items) and len({t.key for t in items}) == 1


def slices(table: pa.Table, sizes: list[int]) -> list[pa.Table]:
    """`table` cut back into consecutive pieces of `sizes` rows (zero-copy)."""
    out, offset = [], 0
    for n in sizes:
        out.append(table.slice(offset, n))
        offset += n
    return out


def _concat(parts: list, axis: int | None):
    if axis is None:
        return pa.concat_arrays(parts)
    return np.concatenate(parts, axis=axis)
