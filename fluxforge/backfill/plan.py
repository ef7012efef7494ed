"""Filters, units of work and the fingerprint of a backfill run.

Why units are (host, exchange, symbol) streams: feature state (VPIN, rolling
windows, the reorder carry) runs through a stream's segments in order, so one
task owns a stream from its first segment to its last with its own engine state
and the result cannot depend on scheduling.  A unit's segments are those where
its stream has rows or events, plus those with an exchange-wide reset event
after the stream started -- exactly the segments in which a whole-host replay
touches that stream's state, so the unit reproduces the replay's files.

A *task* runs several units of one host together (each still with its own
engine state in the bank, keyed by stream): every segment is then decoded and
grouped once per task instead of once per stream -- the dominant cost of a unit
(see bench/backfill.py).  A host's units are dealt into just enough tasks to
keep every worker busy, the largest (by the rows its segments' manifests list)
first.  Since streams never share state, which units share a task changes
nothing in the output.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..config import DEFAULT_MAX_GAP_MS, FeatureOptions, TradeOptions
from ..etl.engines import MAX_CARRY_FACTOR
from ..etl.naming import exchange_path_value, symbol_path_value
from .source import SegmentRef

Key = tuple[str, str]


def parse_time(text: str) -> int:
    """UTC date or time (`2024-08-08`, `2024-08-08T12:00`, `...Z`) -> epoch ms."""
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000)


def _match(value: str | None, globs: tuple[str, ...]) -> bool:
    return not globs or (value is not None and any(fnmatch.fnmatchcase(value, g) for g in globs))


@dataclass(frozen=True)
class Filters:
    hosts: tuple[str, ...] = ()
    exchanges: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    start_ms: int | None = None
    end_ms: int | None = None

    def host_ok(self, host: str) -> bool:
        return _match(host, self.hosts)

    def key_ok(self, key: Key) -> bool:
        return _match(key[0], self.exchanges) and _match(key[1], self.symbols)

    def date_ok(self, date: str) -> bool:
        """A `date=` S3 partition (segment start date) that may hold rows in range (segments < 1 day)."""
        day = parse_time(date)
        return ((self.end_ms is None or day < self.end_ms)
                and (self.start_ms is None or day + 2 * 86_400_000 > self.start_ms))

    def segment_ok(self, ref: SegmentRef, reorder_ms: int) -> bool:
        """Selected by the manifest's time range (no range known: kept, the job decides).

        Past `end` by the engines' largest carry: rows just before `end` that a segment
        holds back are emitted while the next segment is processed."""
        low, high = ref.time_range()
        if self.start_ms is not None and high is not None and high < self.start_ms:
            return False
        margin = (MAX_CARRY_FACTOR + 1) * reorder_ms
        return not (self.end_ms is not None and low is not None and low >= self.end_ms + margin)

    @property
    def emit_range(self) -> tuple[int | None, int | None] | None:
        return None if self.start_ms is None and self.end_ms is None else (self.start_ms, self.end_ms)

    def describe(self) -> dict:
        ms = lambda v: None if v is None else datetime.fromtimestamp(v / 1000, timezone.utc).isoformat()  # noqa: E731
        return {"host": list(self.hosts), "exchange": list(self.exchanges), "symbol": list(self.symbols),
                "start": ms(self.start_ms), "end": ms(self.end_ms)}


@dataclass(frozen=True)
class SegmentStreams:
    """What a scan of one segment found: its streams and exchanges with an exchange-wide reset."""

    keys: frozenset[Key] = frozenset()
    wide_resets: frozenset[str] = frozenset()
    bad: str | None = None  # unusable (replay would skip it): the reason


@dataclass
class Unit:
    host: str
    exchange: str
    symbol: str
    segments: list[SegmentRef] = field(default_factory=list)

    @property
    def key(self) -> Key:
        return (self.exchange, self.symbol)

    @property
    def id(self) -> str:
        """Stable name, also the done-marker's path: host=H/exchange=X/symbol=Y."""
        return (f"host={self.host}/exchange={exchange_path_value(self.exchange)}"
                f"/symbol={symbol_path_value(self.symbol)}")


def build_units(segments: list[SegmentRef], scans: dict[str, SegmentStreams], filters: Filters) -> list[Unit]:
    """One unit per selected stream, its segments in processing order (see the module docstring)."""
    units: dict[tuple[str, str, str], Unit] = {}
    for ref in sorted(segments, key=lambda r: r.id):
        scan = scans.get(ref.name)
        if scan is None or scan.bad:
            continue
        for key in scan.keys:
            if filters.key_ok(key):
                units.setdefault((ref.host, *key), Unit(ref.host, *key))
        for (host, exchange, symbol), unit in units.items():
            if host == ref.host and ((exchange, symbol) in scan.keys or exchange in scan.wide_resets):
                unit.segments.append(ref)
    return sorted(units.values(), key=lambda u: (u.host, u.exchange, u.symbol))


@dataclass
class Task:
    """Units of one host run together; segments = the union of theirs, in order."""

    units: list[Unit]

    @property
    def host(self) -> str:
        return self.units[0].host

    @property
    def keys(self) -> frozenset[Key]:
        return frozenset(u.key for u in self.units)

    @property
    def segments(self) -> list[SegmentRef]:
        seen = {r.name: r for u in self.units for r in u.segments}
        return [seen[n] for n in sorted(seen, key=lambda n: seen[n].id)]

    @property
    def weight(self) -> int:
        """The rows its segments hold (each is decoded whole), by their manifests: its expected cost."""
        return sum(segment_rows(r) for r in self.segments)


def segment_rows(ref: SegmentRef) -> int:
    """Rows of a segment's channels by its manifest (1 where it says nothing)."""
    channels = (ref.manifest or {}).get("channels") if isinstance(ref.manifest, dict) else None
    if not isinstance(channels, dict):
        return 1
    rows = sum(int(e.get("rows") or 0) for e in channels.values() if isinstance(e, dict))
    return max(rows, 1)


def build_tasks(units: list[Unit], workers: int) -> list[Task]:
    """Each host's units dealt round-robin into ceil(2 x workers / hosts) tasks (at most one per unit)."""
    by_host: dict[str, list[Unit]] = {}
    for u in units:
        by_host.setdefault(u.host, []).append(u)
    per_host = max(1, -(-2 * workers // max(len(by_host), 1)))
    tasks = []
    for host_units in by_host.values():
        n = min(per_host, len(host_units))
        tasks += [Task(host_units[i::n]) for i in range(n)]
    return sorted(tasks, key=lambda t: -t.weight)  # longest first: no worker is left with a long one at the end


def fingerprint(options: FeatureOptions, sources: list[str], filters: Filters, version: str,
                reorder_window: float, row_group_rows: int, trades: TradeOptions | None = None,
                symbol_overrides: dict | None = None, max_gap_ms: int = DEFAULT_MAX_GAP_MS) -> dict:
    """What makes two runs' outputs comparable; a DEST only ever holds one fingerprint.  `options` are
    etl.features; etl.trades, etl.symbol_overrides and etl.max_gap_seconds shape the outputs too."""
    body = {"options": options.model_dump(mode="json"), "sources": sorted(sources), "filters": filters.describe(),
            "version": version, "reorder_window": reorder_window, "row_group_rows": row_group_rows,
            "trades": (trades or TradeOptions()).model_dump(mode="json"),
            "symbol_overrides": symbol_overrides or {}, "max_gap_seconds": max_gap_ms / 1000}
    body["fingerprint"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return body


