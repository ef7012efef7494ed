"""Bronze rows bucketed by UTC hour of receipt, spilled to disk until each hour's segment is built.

Why spill: the import writes one segment per hour, but an hour's rows are spread over
many old files (one per channel and symbol, NDJSON segments that straddle hours), and
months of them do not fit in memory.  Rows go to small zstd Arrow IPC files under
`<dir>/<hour>/`; building a segment then reads exactly one hour back, in receive order.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..bronze.schemas import CHANNEL_SCHEMAS

HOUR_NS = 3_600 * 1_000_000_000
_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")


class HourSpill:
    """`add(channel, table)` while reading; then `hours()` and `tables(hour)` to build segments."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._n = itertools.count()

    def add(self, channel: str, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        hours = table.column("recv_ns").to_numpy() // HOUR_NS
        unique = np.unique(hours)
        for hour in unique:
            part = table.filter(pa.array(hours == hour)) if len(unique) > 1 else table
            d = self.root / str(int(hour))
            d.mkdir(exist_ok=True)
            with pa.ipc.new_file(d / f"{next(self._n):09d}-{channel}.arrow", part.schema, options=_OPTIONS) as w:
                w.write_table(part)

    def hours(self) -> list[int]:
        """Hours (since the epoch, UTC) that hold rows, oldest first."""
        return sorted(int(p.name) for p in self.root.iterdir() if p.is_dir() and p.name.isdigit())

    def tables(self, hour: int) -> dict[str, pa.Table]:
        """Channel -> that hour's rows, stably sorted by recv_ns (receive order, as a collector writes)."""
        out = {}
        for channel, schema in CHANNEL_SCHEMAS.items():
            files = sorted((self.root / str(hour)).glob(f"*-{channel}.arrow"))
            if not files:
                continue
            table = pa.concat_tables([pa.ipc.open_file(f).read_all() for f in files]).cast(schema)
            order = np.argsort(table.column("recv_ns").to_numpy(), kind="stable")
            out[channel] = table.take(pa.array(order))
        return out
