"""Reading one value of an old record: type-checked, never defaulted, a reason when it is wrong.

Why shared: Daedalus's ccxt records (`daedalus_ndjson`) and its native Coinbase collector's
raw messages (`daedalus_coinbase`) are read with the same rules, so a bad value is the
same counted `BadLine` whichever collector wrote it.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class BadLine(ValueError):
    """A line that cannot be imported; str(self) is the reason counted in the report."""


class UnmappedChannel(Exception):
    """A well-formed record of a channel bronze has no place for (e.g. `balance`, `myTrades`)."""

    def __init__(self, channel: str, rows: int):
        super().__init__(channel)
        self.channel = channel
        self.rows = rows


def number(value: object, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadLine(f"{what} is {type(value).__name__}, not a number")
    return float(value)


def integer(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (isinstance(value, float) and not (math.isfinite(value) and value.is_integer())):
        raise BadLine(f"{what} is {str(value)[:30]!r}, not an integer")
    if not -2**63 <= value < 2**63:
        raise BadLine(f"{what} {value} is out of range")
    return int(value)


def string(value: object, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise BadLine(f"{what} is {type(value).__name__}, not a string")


def capture_us(value: object) -> int | None:
    """capture_ts (ISO 8601; naive = UTC; or already µs, from a Parquet row) in µs since the epoch;
    None if absent or unreadable, as the old writer's own parser gave up on it (collected_at is
    the fallback)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // timedelta(microseconds=1)
