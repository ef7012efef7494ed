"""Where a reconnecting subscription picks up: no row lost, none delivered twice.

Why: a strategy left running must outlive an ETL restart (an upgrade, a reboot, a crash) and
a drop for being slow.  A reconnect asks the new connection to replay each stream it delivered
from the time of the last row it delivered of it (`resume`), and every other stream `since`
the oldest of those times minus the longest bar interval it subscribes to (a bar is stamped
with its start and published after its end, so a stream with no row delivered yet may publish
one that old); this keeps, per (product, exchange, symbol), the last timestamp delivered and
how many rows had it.  A stream's rows come in time order, and the
rows the ETL sends again (the replay, rows republished after its restart) are flagged
`replay`: a replayed row older than its stream's last, or one of the rows already delivered
at that time (counted, as a stream may have several rows at one time), is dropped.  Rows not
flagged replay are never a repeat (the hub's promise) and always delivered.
"""
from __future__ import annotations

import re
import time

import pyarrow as pa
import pyarrow.compute as pc

from . import wire

_INTERVAL = re.compile(r"/interval=(\d+)s$")


class Resume:
    """The state of one subscription across its connections."""

    def __init__(self, since_ms: int | None, last_minutes: float | None):
        now_ms = int(time.time() * 1000)
        # where the first connection started (its replay point, or its start): where a reconnect
        # resumes while no row was delivered
        self.start_ms = since_ms if since_ms is not None else \
            now_ms - int(last_minutes * 60_000) if last_minutes is not None else now_ms
        self.last: dict[tuple[str, str, str], list[int]] = {}  # stream -> [timestamp, rows delivered at it]
        self.repeats: dict[tuple[str, str, str], int] = {}  # stream -> rows at its last timestamp to drop
        self.lag_ms = 0
        self.schemas: dict[str, pa.Schema] = {}

    def since_ms(self) -> int:
        """The replay point of the next connection: before the oldest last row of the streams
        delivered (where the subscription began while none was)."""
        return min((t for t, _ in self.last.values()), default=self.start_ms) - self.lag_ms

    def points(self) -> dict[str, dict[str, dict[str, int]]]:
        """The request's `resume`: each stream delivered replays from its last row's time (those
        delivered at that time left out by `admit`), not from `since_ms()` -- which, the oldest of all
        streams minus the longest bar interval, is what the streams with no row delivered yet need
        (it is most of the ring for a subscription to every product)."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (product, exchange, symbol), (ts, _) in self.last.items():
            out.setdefault(product, {}).setdefault(exchange, {})[symbol] = ts
        return out

    def admit(self, head: dict, payload: bytes | None) -> tuple[dict, bytes | None] | None:
        """The frame to deliver (an Arrow batch may lose its repeated rows), or None to drop it."""
        kind = head.get("type")
        if kind == "subscribed":
            self._subscribed(head)
        elif kind == "schema":
            self.schemas[head["product"]] = wire.read_schema(head, payload)
        elif kind == "row":
            key = (head.get("product"), head.get("exchange"), head.get("symbol"))
            ts = head.get("timestamp")
            if isinstance(ts, int) and not self._admit(key, ts, bool(head.get("replay"))):
                return None
        elif kind == "batch" and head.get("product") in self.schemas:
            return self._batch(head, payload)
        return head, payload

    def _subscribed(self, head: dict) -> None:
        intervals = [int(m.group(1)) for p in head.get("serves") or [] if (m := _INTERVAL.search(p))]
        self.lag_ms = max([self.lag_ms, *(1000 * i for i in intervals)])
        # what the new connection replays of each stream up to its last timestamp was delivered
        self.repeats = {key: n for key, (_, n) in self.last.items()}

    def _admit(self, key, ts: int, replay: bool) -> bool:
        last = self.last.get(key)
        if last is None or ts > last[0]:
            self.last[key] = [ts, 1]
            self.repeats.pop(key, None)
            return True
        if replay:
            if ts < last[0]:
                return False
            if self.repeats.get(key, 0) > 0:
                self.repeats[key] -= 1
                return False
        if ts == last[0]:
            last[1] += 1
        return True

    def _batch(self, head: dict, payload: bytes) -> tuple[dict, bytes] | None:
        batch = wire.read_batch(payload, self.schemas[head["product"]])
        ms = pc.cast(batch.column("timestamp"), pa.int64()).to_pylist()
        streams = zip(batch.column("exchange").to_pylist(), batch.column("symbol").to_pylist())
        replay = bool(head.get("replay"))
        keep = [ts is None or self._admit((head["product"], e, s), ts, replay) for (e, s), ts in zip(streams, ms)]
        if all(keep):
            return head, payload
        if not any(keep):
            return None
        data = batch.filter(pa.array(keep)).serialize().to_pybytes()
        return {**head, "rows": sum(keep), "size": len(data)}, data
