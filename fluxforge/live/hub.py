"""The live hub: the ETL publishes feature rows, subscribers receive the ones they asked for.

Why `publish()` only appends references: it runs on the ETL's asyncio loop, so
every microsecond it spends is taken from the watchdog, SIGTERM handling and the
computation itself.  It splits the table by (exchange, symbol) (a stream's rows are
cut out of it only when a subscriber or a replay reads them), adds the chunks to the
replay ring (the table once for all of them) and offers each to every matching
subscriber's bounded queue; a subscriber whose queue is full is dropped with a
reason there and then (counted, logged, told if its socket still takes a line).
Encoding happens in the subscribers' send tasks, once per chunk and format.

Why the places may be fewer than configured: a subscriber holds descriptors, and the endpoints
hold at most DESCRIPTORS_PER_PLACE a place (a Unix subscriber and one waiting for its request;
two WebSocket connections).  Beyond the process's soft RLIMIT_NOFILE, accept() and the ETL's own
opens (journals, parts, checkpoints) would fail with EMFILE; so the hub offers only the places the
limit leaves after RESERVED_DESCRIPTORS, and says so at start (`live_subscribers_capped`).  The
unit sets LimitNOFILE= high enough for the largest etl.live.max_subscribers.

Why subscribe is synchronous: the ring snapshot and the registration for live
chunks happen in one step on the loop, between two publishes, so "the last N
minutes, then live" has no gap and no duplicate at the boundary.  A publish from
another thread is handed to the loop for the same reason.
"""
from __future__ import annotations

import asyncio
import hmac
import resource
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..logs import get_logger
from . import wire
from .protocol import BusyError, Request, RequestError
from .catalog import Catalog
from .chunk import Chunk
from .ring import RecentRows
from .settings import LiveConfig, server_socket_path
from .subscriber import Sink, Subscriber

Stream = tuple[str, str]  # (exchange, symbol)

log = get_logger("fluxforge.live")
DROP_REASONS = ("slow", "stalled")
DESCRIPTORS_PER_PLACE = 4
RESERVED_DESCRIPTORS = 256  # the ETL's own: journals, parts being written, checkpoints, inotify, metrics


def subscriber_places(configured: int, soft_limit: int) -> int:
    """The subscribers the endpoints may serve: etl.live.max_subscribers, fewer if the descriptor
    limit (the process's soft RLIMIT_NOFILE) cannot hold their connections besides the ETL's own
    files; at least one."""
    if soft_limit == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, (soft_limit - RESERVED_DESCRIPTORS) // DESCRIPTORS_PER_PLACE))


class LiveHub:
    def __init__(self, cfg: LiveConfig, state_dir: Path | None = None, socket_path: Path | None = None,
                 catalog: Catalog | None = None):
        self.cfg = cfg
        self.catalog = catalog  # what the ETL serves: other products and streams are refused (None: any)
        self.socket_path = socket_path or server_socket_path(cfg, Path(state_dir or "."))
        self.ring = RecentRows(cfg.replay_minutes, cfg.replay_rows, cfg.replay_mb)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.max_subscribers = subscriber_places(cfg.max_subscribers, soft)
        if self.max_subscribers < cfg.max_subscribers:
            log.warning("live_subscribers_capped", max_subscribers=cfg.max_subscribers, places=self.max_subscribers,
                        open_files_limit=soft, needed=cfg.max_subscribers * DESCRIPTORS_PER_PLACE + RESERVED_DESCRIPTORS,
                        note="raise the limit (LimitNOFILE= in a drop-in for fluxforge-etl.service) or lower "
                             "etl.live.max_subscribers")
        self.subscribers: dict[int, Subscriber] = {}
        self.counters: dict = {"published_rows": 0, "published_chunks": 0, "sent_rows": 0, "subscribed": 0,
                               "refused": 0, "dropped": dict.fromkeys(DROP_REASONS, 0)}
        self._seq = 0
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.endpoints = None

    # -- the ETL side --------------------------------------------------------------------
    def publish(self, product: str, table: pa.Table | pa.RecordBatch, *, replay: bool = False,
                runs: list[tuple[Stream, int]] | None = None) -> None:
        """Hand rows of one product to the subscribers; never blocks, never waits for a reader.
        runs: ((exchange, symbol), rows) of each stream in table order, each stream's rows together,
        as the publisher built the table (the ETL does): then the hub need not find them."""
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._publish, product, table, replay, runs)
            return
        self._publish(product, table, replay, runs)

    def _publish(self, product: str, table: pa.Table | pa.RecordBatch, replay: bool,
                 given: list[tuple[Stream, int]] | None = None) -> None:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if not table.num_rows:
            return
        schema = table.schema  # get_field_index: a 150-column schema must not cost a Python loop per publish
        missing = [c for c in ("exchange", "symbol", "timestamp") if schema.get_field_index(c) < 0]
        if missing:
            raise ValueError(f"live rows of {product!r} lack column(s) {', '.join(missing)}")
        clash = [c for c in wire.META_KEYS if schema.get_field_index(c) >= 0]
        if clash:
            raise ValueError(f"live rows of {product!r} use reserved column name(s) {', '.join(clash)}")
        runs = _runs(table) if given is None else _given_runs(given)
        if runs is not None:  # each stream's rows together (the ETL's publishes): one table for all
            chunks = Chunk.runs(self._seq + 1, product, table, runs, replay)
        else:
            chunks = [Chunk(self._seq + 1 + i, product, e, s, part, replay) for i, (e, s, part) in enumerate(_by_filter(table))]
            table = pa.concat_tables([c.table for c in chunks])
        self._seq += len(chunks)
        self.counters["published_rows"] += sum(c.rows for c in chunks)
        self.counters["published_chunks"] += len(chunks)
        self.ring.add_all(chunks, table)
        for chunk in chunks:
            for sub in list(self.subscribers.values()):
                if sub.request.matches(product, chunk.exchange, chunk.symbol) and not sub.offer(chunk):
                    self.drop(sub, "slow", sub.refused)

    # -- the subscriber side -------------------------------------------------------------
    def check_token(self, request: Request, presented: str | None = None) -> None:
        """Refuse a network subscriber without the configured token (the Unix socket relies on its mode)."""
        token = self.cfg.token
        if token is None:
            return
        given = presented if presented is not None else request.token
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            self.counters["refused"] += 1
            raise RequestError("unauthorized: a valid token is required (etl.live.token)")

    def subscribe(self, request: Request, sink: Sink) -> Subscriber:
        """Register a subscriber, its replay queued ahead of everything published after this call."""
        if len(self.subscribers) >= self.max_subscribers:
            self.counters["refused"] += 1
            raise BusyError(f"too many subscribers ({self.max_subscribers}, {self.places_source()})")
        if self.catalog is not None:
            try:
                self.catalog.check(request, {(e, s) for _p, e, s in self.ring.keys()})
            except RequestError:
                self.counters["refused"] += 1
                raise
        self._next_id += 1
        sub = Subscriber(self._next_id, request, sink, self.cfg.buffer_rows, self.cfg.send_timeout,
                         int(self.cfg.buffer_mb * 2 ** 20))
        from_ms = request.replay_from_ms()
        replays = from_ms is not None or bool(request.resume)
        replay = self.ring.since(from_ms, [k for k in self.ring.keys() if request.matches(*k)],
                                 request.replay_from) if replays else []
        replayed, held, left_out = sum(c.rows for c in replay), sum(c.bytes for c in replay), 0
        while replay and sub.refusal(replayed, held) is not None:  # keep the newest that fit: no gap before live
            oldest = replay.pop(0)
            replayed, held, left_out = replayed - oldest.rows, held - oldest.bytes, left_out + oldest.rows
        for chunk in replay:
            sub.offer(chunk)
        serves = self.catalog.serving(request) if self.catalog is not None else None
        # replay_left_out: the oldest rows of the replay, beyond the subscriber's buffer (buffer_rows/_mb)
        sub.mark((wire.header("subscribed", id=sub.id, replay_rows=replayed, replay_left_out=left_out, serves=serves,
                              **request.describe()), None))
        sub.queue.rotate(1)  # `subscribed` goes first, then the replay
        if replays:
            sub.mark((wire.header("live"), None))
        self.subscribers[sub.id] = sub
        self.counters["subscribed"] += 1
        log.info("live_subscribed", id=sub.id, peer=sink.peer, replay_rows=replayed, **request.describe())
        if left_out:
            log.warning("live_replay_left_out", id=sub.id, rows=left_out, replay_rows=replayed,
                        buffer_rows=self.cfg.buffer_rows, buffer_mb=self.cfg.buffer_mb,
                        note="the oldest rows of the replay asked for did not fit the subscriber's buffer "
                             "(etl.live.buffer_rows / buffer_mb): it gets the newest")
        return sub

    async def serve(self, sub: Subscriber) -> None:
        """Run a subscriber's sender until it ends (transport gone, dropped, disconnected)."""
        task = sub.task = asyncio.create_task(sub.run())
        try:
            reason = await task
        except asyncio.CancelledError:
            if not task.cancelled() or sub.closed is None:  # we were cancelled, not the sender
                task.cancel()
                self._forget(sub, sub.closed or "shutdown")
                raise
            return  # dropped or disconnected: already accounted for
        if reason == "stalled":
            self.drop(sub, "stalled", f"sent data unread for {sub.send_timeout:g}s (etl.live.send_timeout)")
        else:
            self._forget(sub, reason)

    def disconnect(self, sub: Subscriber, reason: str = "closed") -> None:
        """The subscriber went away (EOF, protocol error): stop sending to it."""
        if sub.closed is None:
            self._forget(sub, reason)
        if sub.task is not None:
            sub.task.cancel()

    def drop(self, sub: Subscriber, reason: str, detail: str) -> None:
        """End a subscriber that cannot keep up: counted, logged, told if possible."""
        if sub.closed is not None:
            return
        self.counters["dropped"][reason] = self.counters["dropped"].get(reason, 0) + 1
        log.warning("live_subscriber_dropped", id=sub.id, peer=sub.sink.peer, reason=reason, detail=detail,
                    queued_rows=sub.queued_rows, queued_mb=round(sub.queued_bytes / 2 ** 20, 1),
                    sent_rows=sub.sent_rows)
        self._forget(sub, reason)
        sub.sink.last_words((wire.header("dropped", reason=reason, detail=detail), None))
        if sub.task is not None and sub.task is not asyncio.current_task():
            sub.task.cancel()

    def _forget(self, sub: Subscriber, reason: str) -> None:
        sub.closed = reason
        sub.queue.clear()
        sub.queued_rows = sub.queued_bytes = 0
        self.counters["sent_rows"] += sub.sent_rows
        if self.subscribers.pop(sub.id, None) is not None and reason not in DROP_REASONS:
            log.info("live_unsubscribed", id=sub.id, reason=reason, sent_rows=sub.sent_rows)

    def places_source(self) -> str:
        """What bounds the places, for a refusal: the setting, or the descriptor limit."""
        return "etl.live.max_subscribers" if self.max_subscribers == self.cfg.max_subscribers \
            else "the ETL's open-files limit"

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the endpoints (a failure is logged and retried in the background, never raised)."""
        from .endpoint import LiveEndpoints

        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.endpoints = LiveEndpoints(self)
        await self.endpoints.start()

    async def close(self) -> None:
        """Tell every subscriber (`closed`), then stop the endpoints."""
        for sub in list(self.subscribers.values()):
            self._forget(sub, "shutdown")
            sub.sink.last_words((wire.header("closed", reason="the ETL is stopping"), None))
            if sub.task is not None:
                sub.task.cancel()
        if self.endpoints is not None:
            await self.endpoints.close()

    def status(self) -> str:
        dropped = sum(self.counters["dropped"].values())
        return f"live {len(self.subscribers)} sub{'s' if len(self.subscribers) != 1 else ''}" + (
            f" ({dropped} dropped)" if dropped else "")


def _given_runs(given: list[tuple[Stream, int]]) -> list[tuple[str, str, int, int]]:
    """A publisher's runs as (exchange, symbol, offset, rows), empty ones left out (Chunk.runs checks
    that they cover the table); a stream named twice is a ValueError."""
    out, offset = [], 0
    for (exchange, symbol), n in given:
        if n:
            out.append((exchange, symbol, offset, n))
            offset += n
    if len({(e, s) for e, s, _, _ in out}) < len(out):
        raise ValueError("runs name a stream twice: each stream's rows must be together")
    return out


def _runs(table: pa.Table) -> list[tuple[str, str, int, int]] | None:
    """(exchange, symbol, offset, rows) of each stream in the table if each stream's rows are together
    (a product's rows of all symbols, as the ETL publishes them; found without a compute call per
    stream), in order; else None."""
    ex, sy = table.column("exchange"), table.column("symbol")
    n = table.num_rows
    if n == 1:  # one row as it becomes final
        starts = [0]
    else:
        differs = pc.or_(pc.not_equal(ex.slice(1), ex.slice(0, n - 1)), pc.not_equal(sy.slice(1), sy.slice(0, n - 1)))
        starts = [0, *(np.flatnonzero(pc.fill_null(differs, True).to_numpy(zero_copy_only=False)) + 1).tolist()]
    keys = [(ex[i].as_py(), sy[i].as_py()) for i in starts]
    if len(set(keys)) < len(keys) or any(None in k for k in keys):
        return None
    ends = [*starts[1:], n]
    return [(e, s, a, b - a) for (e, s), a, b in zip(keys, starts, ends)]


def _by_filter(table: pa.Table) -> list[tuple[str, str, pa.Table]]:
    """(exchange, symbol, rows) per stream in the table, each stream's rows in their published order."""
    ex, sy = table.column("exchange"), table.column("symbol")
    pairs = pa.table({"e": ex, "s": sy}).group_by(["e", "s"], use_threads=False).aggregate([])
    return [(e, s, table.filter(pc.and_(pc.equal(ex, e), pc.equal(sy, s))))
            for e, s in zip(pairs.column("e").to_pylist(), pairs.column("s").to_pylist())]
