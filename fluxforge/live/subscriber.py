"""One subscriber: a bounded queue of chunks and the task that sends them.

Why bounded and dropped, never waited for: the ETL's loop publishes; if it
awaited a slow reader, one stalled strategy would stall the features of every
other one (and the ETL's watchdog).  `offer()` only appends a reference and
refuses when the subscriber already has `buffer_rows` rows or `buffer_bytes` of
them (Chunk.bytes: a chunk of one 170-column row holds ~80 kB, so rows alone
would let a reader a few minutes behind hold gigabytes) waiting; the hub then
drops it with a reason.  A subscriber whose socket accepts nothing for
`send_timeout` seconds is dropped too (a stalled reader on a quiet stream never
fills its queue).

The transport is a `Sink` (Unix socket or WebSocket, endpoint.py): `send()`
writes frames and waits for the transport's buffer to drain; `last_words()` tries
to leave one final frame and closes without waiting.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from . import wire
from .protocol import Request
from .chunk import Chunk, Frames, Published, spans

SEND_ROWS = 5000  # rows per write at most (bounds one write's memory)

class Sink(Protocol):
    peer: str

    async def send(self, frames: list[wire.Frame]) -> None: ...
    def last_words(self, frame: wire.Frame) -> None: ...


class _Marker:
    """A control frame queued between chunks (e.g. `live` after the replay)."""

    rows = 0
    bytes = 0
    replay = False

    def __init__(self, frame: wire.Frame):
        self.frame = frame


class Subscriber:
    def __init__(self, sid: int, request: Request, sink: Sink, buffer_rows: int, send_timeout: float,
                 buffer_bytes: int):
        self.id = sid
        self.request = request
        self.sink = sink
        self.buffer_rows = buffer_rows
        self.buffer_bytes = buffer_bytes
        self.send_timeout = send_timeout
        self.queue: deque[Chunk | _Marker] = deque()
        self.queued_rows = 0
        self.queued_bytes = 0
        self.refused: str | None = None  # why the last offer was refused
        self.sent_rows = 0
        self.closed: str | None = None      # why it ended (None: running)
        self._wake = asyncio.Event()
        self._schemas: dict[str, object] = {}
        self._sent: list[Frames] = []  # the shared encodings of the last write (chunk.Published)
        self.task: asyncio.Task | None = None

    def offer(self, chunk: Chunk) -> bool:
        """Queue a chunk (no I/O, no await); False if it would exceed the buffer."""
        self.refused = self.refusal(self.queued_rows + chunk.rows, self.queued_bytes + chunk.bytes)
        if self.refused is not None:
            return False
        self.queue.append(chunk)
        self.queued_rows += chunk.rows
        self.queued_bytes += chunk.bytes
        self._wake.set()
        return True

    def refusal(self, rows: int, nbytes: int) -> str | None:
        """Why `rows` rows holding `nbytes` may not wait for this subscriber (None: they may)."""
        if rows > self.buffer_rows:
            return f"more than {self.buffer_rows} rows waiting (etl.live.buffer_rows)"
        if nbytes > self.buffer_bytes:
            return f"more than {self.buffer_bytes / 2 ** 20:g} MB of rows waiting (etl.live.buffer_mb)"
        return None

    def mark(self, frame: wire.Frame) -> None:
        self.queue.append(_Marker(frame))
        self._wake.set()

    def _frames(self, item: _Marker | tuple[Published, int, int]) -> list[wire.Frame]:
        """A queue item's frames; a span of a publish's rows (chunk.spans) is one encoding."""
        if isinstance(item, _Marker):
            return [item.frame]
        published, offset, rows = item
        frames: list[wire.Frame] = []
        schema = published.plain().schema
        if self._schemas.get(published.product) != schema:
            self._schemas[published.product] = schema
            frames.append(wire.schema_frame(published.product, schema, self.request.format))
        shared = published.frames(self.request.format, offset, rows)
        self._sent.append(shared)
        return frames + shared

    async def run(self) -> str:
        """Send until the transport fails ('closed') or a send stalls ('stalled').

        Everything queued is written in one go and drained once: a subscriber that fell a
        little behind catches up in one write instead of one loop turn per chunk."""
        while True:
            while not self.queue:
                self._wake.clear()
                await self._wake.wait()
            items, rows = [], 0
            while self.queue and rows < SEND_ROWS:
                item = self.queue.popleft()
                self.queued_rows -= item.rows
                self.queued_bytes -= item.bytes
                rows += item.rows
                items.append(item)
            frames: list[wire.Frame] = []
            self._sent = []
            for item in spans(items):
                frames += self._frames(item)
            try:
                async with asyncio.timeout(self.send_timeout):
                    await self.sink.send(frames)
            except TimeoutError:
                return "stalled"
            except (ConnectionError, OSError, RuntimeError):
                return "closed"
            self.sent_rows += rows
