"""How the differential tests compare one kernel value with the reference's: 1e-9 relative.

Why shared: every kernel-vs-reference test (trade bars, per-trade features) must judge
values the same way: NaN only matches NaN, floats within 1e-9 relative (1e-12 absolute
near 0, where bounded ratios such as imbalances cancel), anything else exactly.
"""
from __future__ import annotations

import math

import pytest


def assert_value(got, want, where) -> None:
    if isinstance(want, float) and math.isnan(want):
        assert got is not None and math.isnan(got), (where, got)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (where, got, want)
    else:
        assert got == want, (where, got, want)
