"""The pieces every configuration model shares: the strict base model, the ceilings for
durations, and the partition-collision check.

Why a module of its own: the configuration is split by section (config.py for the whole
file, config_exchange.py for one exchange entry) and each part must be exactly as strict.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

DAY = 86400.0
HOUR = 3600.0


class StrictModel(BaseModel):
    """Unknown keys, wrong types on assignment and non-finite floats are all refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def distinct_partitions(values: list[str], encode, what: str) -> None:
    """Two configured names sharing a feature partition would mix their rows: refuse that here."""
    seen: dict[str, str] = {}
    for v in values:
        other = seen.setdefault(encode(v), v)
        if other != v:
            raise ValueError(f"{what} {other!r} and {v!r} map to the same feature partition {encode(v)!r}")
