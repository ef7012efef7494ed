"""Whether the rows a subscriber received are the Parquet rows: value by value, NaN equal to NaN.

Why its own module: "a live row equals its Parquet row" is the promise of live features
(docs/live.md), and both the tests and `fluxforge demo` check it on row dicts
(`subscribe()` rows against `pyarrow.Table.to_pylist()`).  Python's `==` is not that
check: NaN != NaN, and 1 == 1.0 == True would hide a column that changed type.
"""
from __future__ import annotations

import math


def same_value(a, b) -> bool:
    """Equal and of the same type (lists element by element); NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def same_row(got: dict, want: dict) -> bool:
    """The same columns in the same order, every value `same_value`."""
    return list(got) == list(want) and all(same_value(got[k], want[k]) for k in want)


def same_rows(got: list[dict], want: list[dict]) -> bool:
    """Row dicts equal one by one, in order (`same_row`)."""
    return len(got) == len(want) and all(same_row(g, w) for g, w in zip(got, want))
