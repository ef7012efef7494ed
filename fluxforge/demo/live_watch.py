"""The demo's own live subscriber: what a strategy received while the demo ran, checked against Parquet.

Why in the demo: live features promise more than speed -- every row a strategy receives
live is the row that later lands in Parquet, so a model trained on the files sees the
inputs it gets live (docs/live.md).  The demo shows that on its own run, offline: it
subscribes to the ETL's socket with `fluxforge.live.subscribe()` (what a strategy uses)
as soon as the socket is there, asking for every recent row the ETL still holds first
(flagged replay: published before the demo was connected), keeps every row until the ETL
stops, then compares them
with the parts that landed -- per product and symbol, row by row in order, every column
(`live.row_equality`: NaN equals NaN, types must match) -- and measures how long after the
exchange event each hf row arrived.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..etl.live_latency import LatencyWindow
from ..etl.live_rows import part_files
from ..live import LiveClosed, LiveDropped, LiveError, subscribe
from ..live.row_equality import same_row

META = ("product", "replay", "exchange", "symbol")  # what a live row carries beyond its Parquet columns
Key = tuple[str, str, str]  # (product, exchange, symbol)
RECENT_MINUTES = 24 * 60.0  # the rows published before the subscription: all the ETL holds (etl.live.replay_*)


@dataclass
class LiveCheck:
    """The summary's `live` lines: rows received, how late, and whether they are the landed rows."""

    received: int = 0
    replayed: int = 0  # of them: published before the subscription, sent from the ETL's recent rows
    landed: int = 0
    products: int = 0  # (product, symbol) streams that landed
    latency: tuple[float, float] | None = None  # hf rows: p50, p99 seconds after the exchange event
    differences: list[str] = field(default_factory=list)  # one line per stream whose rows are not the landed ones
    error: str | None = None  # the subscription failed or was never made (why)


class LiveWatch:
    """Subscribe to everything the ETL serves on `socket` and keep it (`run` until the ETL stops)."""

    def __init__(self, socket: Path):
        self.socket = socket
        self.rows: dict[Key, list[dict]] = defaultdict(list)
        self.replays = 0
        self.latency = LatencyWindow()
        self.error: str | None = None

    @property
    def received(self) -> int:
        return sum(len(r) for r in self.rows.values())

    async def run(self) -> None:
        """Every row the socket serves, until the ETL closes it (its stop)."""
        try:
            async for row in subscribe(socket=self.socket, last_minutes=RECENT_MINUTES):
                now = time.time()
                meta = {k: row.pop(k) for k in META}
                self.rows[(meta["product"], meta["exchange"], meta["symbol"])].append(row)
                self.replays += bool(meta["replay"])
                if meta["product"] == "hf" and not meta["replay"]:
                    self.latency.add(np.array([now - row["timestamp"].timestamp()]))
        except LiveDropped as e:  # too slow for its buffer: the rows after it were never sent
            self.error = str(e)
        except LiveClosed:
            pass
        except (LiveError, OSError) as e:
            self.error = str(e)

    def check(self, features: Path) -> LiveCheck:
        """The rows received against every landed part under `features`."""
        landed = landed_rows(features)
        out = LiveCheck(received=self.received, replayed=self.replays, landed=sum(len(r) for r in landed.values()),
                        products=len(landed), latency=self.latency.quantiles(), error=self.error)
        for key in sorted(set(landed) | set(self.rows)):
            got, want = self.rows.get(key, []), landed.get(key, [])
            diff = _difference(got, want)
            if diff:
                out.differences.append(f"{' '.join(key)}: {diff}")
        return out


def landed_rows(features: Path) -> dict[Key, list[dict]]:
    """(product, exchange, symbol) -> its Parquet rows as dicts, in segment order (part paths sort
    by date, then by segment)."""
    out: dict[Key, list[dict]] = defaultdict(list)
    for product, (exchange, symbol), path in part_files(features):
        out[(product, exchange, symbol)] += pq.read_table(path, partitioning=None).to_pylist()
    return dict(out)


def landed_count(features: Path) -> int:
    """Rows in every landed part under `features` (from the Parquet footers)."""
    return sum(pq.read_metadata(path).num_rows for _, _, path in part_files(features))


def _difference(got: list[dict], want: list[dict]) -> str | None:
    """None if `got` is `want`; else what differs, in a few words."""
    if len(got) != len(want):
        return f"{len(got)} row(s) received live, {len(want)} landed"
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if not same_row(g, w)]
    return f"{len(bad)} of {len(want)} row(s) differ, the first at row {bad[0]}" if bad else None
