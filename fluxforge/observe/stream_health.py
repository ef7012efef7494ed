"""Is data still flowing?  Per exchange and symbol freshness, rate and incidents from bronze.

Why from the segments themselves: the files the collector wrote are the ground
truth an operator cares about -- a process can be "active" in systemd while no
row has landed for ten minutes.  We read only the recent segments (active
journals and finished Parquet, projected to three columns), so this stays cheap
on a Pi: the last hour of rows plus the events rows (gap / resync / reconnect /
dropped / disk_full ...) that the collector writes next to the data.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..bronze.schemas import CHANNEL_SCHEMAS, RESET_EVENTS, channel_file
from .inspection import InspectError
from ..bronze.journal import JournalScan, JournalUnreadable, iter_journal
from ..bronze.segments import STATES, SegmentId, SegmentStore

WINDOW_S = 3600          # "the last hour": gaps, drops, message counts
RATE_WINDOW_S = 300      # message rate is measured over the last five minutes
DATA_CHANNELS = tuple(c for c in CHANNEL_SCHEMAS if c != "events")  # every data channel counts as fresh data
NS = 1_000_000_000


@dataclass
class StreamFacts:
    """What the recent bronze rows say about one exchange + symbol (symbol None = exchange-wide)."""

    exchange: str
    symbol: str | None
    first_recv_ns: int | None = None
    last_recv_ns: int | None = None
    rows_last_hour: int = 0
    rows_rate_window: int = 0
    events: Counter = field(default_factory=Counter)
    dropped_rows: int = 0
    unrequested_rows: int = 0   # rows the exchange sent for this symbol although nobody configured it

    def as_dict(self, now_ns: int) -> dict[str, Any]:
        age = None if self.last_recv_ns is None else round(max(0, now_ns - self.last_recv_ns) / NS, 3)
        covered = RATE_WINDOW_S
        if self.first_recv_ns is not None:
            covered = min(RATE_WINDOW_S, max(1.0, (now_ns - self.first_recv_ns) / NS))
        return {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "last_message_age_s": age,
            "messages_last_hour": self.rows_last_hour,
            "rate_per_s": round(self.rows_rate_window / covered, 3),
            "gaps_last_hour": sum(n for e, n in self.events.items() if e in RESET_EVENTS),
            "dropped_last_hour": self.dropped_rows,
            "unrequested_last_hour": self.unrequested_rows,
            "events_last_hour": dict(sorted(self.events.items())),
        }


@dataclass
class ScanResult:
    streams: dict[tuple[str, str | None], StreamFacts]
    segments_read: int
    unreadable: list[str]


def recent_segments(store: SegmentStore, now_ns: int, segment_max_seconds: float) -> list[Path]:
    """Segments of any state that may hold rows of the last hour, newest first.

    A segment lasts at most segment_max_seconds (plus a flush), so one that
    started earlier than window + 2x that cannot hold rows inside the window.
    """
    horizon_s = now_ns / NS - WINDOW_S - 2 * segment_max_seconds
    found: dict[str, Path] = {}  # by name: a segment that moved on between two listings is listed twice
    for state in STATES:
        for seg in store.list(state):
            if SegmentId.parse(seg.name).start_datetime.timestamp() >= horizon_s:
                found.setdefault(seg.name, seg)
    return sorted(found.values(), key=lambda p: SegmentId.parse(p.name), reverse=True)


def _read_moving(store: SegmentStore, seg: Path, channel: str, columns: list[str] | None) -> pa.Table | None:
    """`_read_channel`, following the segment if it moves on while it is read: the collector
    finishes an active one (journal -> Parquet, active/ -> ready/) and the ETL claims and
    commits it (ready/ -> processing/ -> done/) at any moment, so a file found a moment ago
    may be gone.  That is not an unreadable file: the segment is read where it is now (None:
    deleted meanwhile, by retention)."""
    for _ in range(2 * len(STATES)):
        try:
            table = _read_channel(seg, channel, columns)
            if table is not None or seg.is_dir():
                return table
        except FileNotFoundError:
            pass  # a form of the channel, or the whole directory, went between the look and the read
        here = [p for state in STATES if (p := store.path(state, seg.name)).is_dir()]
        if not here:
            return None
        seg = here[0]
    return _read_channel(seg, channel, columns)  # still moving after all that: what it reads now, or the error


def _read_channel(seg: Path, channel: str, columns: list[str] | None) -> pa.Table | None:
    parquet = seg / channel_file(channel, finished=True)
    if parquet.is_file():
        return pq.read_table(parquet, columns=columns)
    journal = seg / channel_file(channel, finished=False)
    if journal.is_file():
        # batch by batch, keeping only the needed columns: an active journal can be 64 MB of
        # compressed books, which must not be decompressed whole on a 1 GB Pi
        schema = CHANNEL_SCHEMAS[channel]
        keep = columns or schema.names
        try:
            batches = [b.select(keep) for b in iter_journal(journal, schema, JournalScan())]
        except JournalUnreadable as e:
            raise InspectError(f"{journal}: {e}") from None
        return pa.Table.from_batches(batches, schema=pa.schema([schema.field(c) for c in keep]))
    return None


def scan(store: SegmentStore, now_ns: int, segment_max_seconds: float) -> ScanResult:
    """Aggregate the rows and events of the recent segments per (exchange, symbol)."""
    streams: dict[tuple[str, str | None], StreamFacts] = {}
    unreadable: list[str] = []
    window_start = now_ns - WINDOW_S * NS
    rate_start = now_ns - RATE_WINDOW_S * NS
    segs = recent_segments(store, now_ns, segment_max_seconds)

    def facts(ex: str, sym: str | None) -> StreamFacts:
        return streams.setdefault((ex, sym), StreamFacts(ex, sym))

    for seg in segs:
        for channel in DATA_CHANNELS + ("events",):
            cols = None if channel == "events" else ["exchange", "symbol", "recv_ns"]
            try:
                table = _read_moving(store, seg, channel, cols)
            except (InspectError, pa.ArrowInvalid, OSError) as e:
                unreadable.append(f"{seg.name}/{channel}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
                continue
            if table is None or table.num_rows == 0:
                continue
            if channel == "events":
                _add_events(table, window_start, facts)
            else:
                _add_rows(table, window_start, rate_start, facts)
    return ScanResult(streams, len(segs), unreadable)


def _add_rows(table: pa.Table, window_start: int, rate_start: int, facts) -> None:
    recv = table.column("recv_ns")
    stats = table.group_by(["exchange", "symbol"]).aggregate([("recv_ns", "min"), ("recv_ns", "max")])
    for row in stats.to_pylist():
        f = facts(row["exchange"], row["symbol"])
        lo, hi = row["recv_ns_min"], row["recv_ns_max"]
        f.first_recv_ns = lo if f.first_recv_ns is None else min(f.first_recv_ns, lo)
        f.last_recv_ns = hi if f.last_recv_ns is None else max(f.last_recv_ns, hi)
    for start, attr in ((window_start, "rows_last_hour"), (rate_start, "rows_rate_window")):
        recent = table.filter(pc.greater_equal(recv, start))
        if recent.num_rows == 0:
            continue
        counts = recent.group_by(["exchange", "symbol"]).aggregate([([], "count_all")])
        for row in counts.to_pylist():
            f = facts(row["exchange"], row["symbol"])
            setattr(f, attr, getattr(f, attr) + row["count_all"])


def _add_events(table: pa.Table, window_start: int, facts) -> None:
    recent = table.filter(pc.greater_equal(table.column("recv_ns"), window_start))
    for row in recent.to_pylist():
        f = facts(row["exchange"], row.get("symbol"))
        f.events[row["event"]] += 1
        if row["event"] == "dropped":
            f.dropped_rows += row.get("count") or 1
        elif row["event"] == "unrequested":
            f.unrequested_rows += row.get("count") or 1


def stream_report(result: ScanResult, now_ns: int, configured: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One entry per configured stream (seen or not), then streams only seen in the data."""
    out = []
    keys = list(dict.fromkeys(list(configured) + sorted(result.streams, key=lambda k: (k[0], k[1] or ""))))
    for key in keys:
        f = result.streams.get(key) or StreamFacts(*key)
        d = f.as_dict(now_ns)
        d["configured"] = key in configured
        out.append(d)
    return out


def events_total(result: ScanResult) -> dict[str, int]:
    total: Counter = Counter()
    for f in result.streams.values():
        total.update(f.events)
    return dict(sorted(total.items()))

