"""Fan-out of market events to WebSocket connections, with per-connection send queues.

Why a queue per connection: one slow client must not hold up the market or the
other clients.  A connection whose queue overflows is closed, as real
exchanges drop consumers that cannot keep up.  The hub applies every book
update to the authoritative BookState *before* fanning it out, so a REST
snapshot taken at any moment is consistent with the update ids already queued.
Connection-level faults (stall, slow, disconnect, malformed) act here.
"""
from __future__ import annotations

import asyncio
import json
import math
from aiohttp import web

from .book import BookState
from .book_window import TopWindow
from .events import BookUpdate, Event, sent_id, sent_values
from .sentlog import SentLog

MAX_QUEUED_FRAMES = 50_000
LOOPBACK_KEY = web.AppKey("loopback", object)  # the app's LoopbackExchange, for protocol handlers


def loopback(request: web.Request):
    """The LoopbackExchange serving `request`."""
    return request.app[LOOPBACK_KEY]


class Connection:
    """One client WebSocket of some protocol; subclasses encode events and parse requests."""

    protocol = "?"
    heartbeat_interval: float | None = None  # seconds between `heartbeat()` calls; None: the protocol has none

    def __init__(self, hub: "Hub", ws: web.WebSocketResponse, request: web.Request):
        self.hub, self.ws, self.request = hub, ws, request
        self.queue: asyncio.Queue = asyncio.Queue(MAX_QUEUED_FRAMES)
        self.subscriptions: set[tuple[str, str]] = set()  # (symbol, channel)
        self.stalled_until = 0.0  # loop time; math.inf = until resumed
        self.sent_frames = 0
        self.closed = False

    # -- implemented by protocols --------------------------------------------------------
    def encode(self, event: Event) -> str | None:
        """The wire frame for `event` on this connection, or None if not subscribed in a form it can carry."""
        raise NotImplementedError

    async def on_text(self, text: str) -> None:
        raise NotImplementedError

    def heartbeat(self) -> None:
        """Called every `heartbeat_interval` while open: protocols with keep-alive frames enqueue one here."""

    def deliver(self, event: Event) -> None:
        """Queue `event`'s frame if this connection carries it; a protocol whose subscription turns an
        event into another kind of frame (Binance's partial depth snapshots) overrides this."""
        frame = self.encode(event)
        if frame is not None:
            self.enqueue(frame, event.symbol, event.channel, sent_id(event), values=sent_values(event))

    # -- plumbing --------------------------------------------------------------------------
    def subscribe(self, symbol: str, channel: str) -> None:
        self.subscriptions.add((symbol, channel))
        self.hub.subscribers.setdefault((symbol, channel), set()).add(self)

    def unsubscribe(self, symbol: str, channel: str) -> None:
        self.subscriptions.discard((symbol, channel))
        self.hub.subscribers.get((symbol, channel), set()).discard(self)

    def enqueue(self, frame: str, symbol: str | None = None, channel: str | None = None,
                ident: int | None = None, snapshot: bool = False, values: tuple | None = None) -> None:
        """Queue a frame; with `channel`, its sending is recorded (a book `snapshot` separately;
        `values`: what the sent-log keeps of the message besides its id, see `events.sent_values`)."""
        if self.closed:
            return
        try:
            self.queue.put_nowait((frame, symbol, channel, ident, snapshot, values))
        except asyncio.QueueFull:
            self.hub.sent.fault("overflow_disconnect", protocol=self.protocol, path=self.request.path)
            self.abort()

    def send_json(self, obj) -> None:
        self.enqueue(json.dumps(obj, separators=(",", ":")))

    def stalled(self) -> bool:
        return self.stalled_until > asyncio.get_running_loop().time()

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake."""
        self.closed = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def sender(self) -> None:
        while True:
            frame, symbol, channel, ident, snapshot, values = await self.queue.get()
            if self.stalled():
                continue  # socket open, nothing sent: the frame is lost, not recorded
            delay = self.hub.slow_delay()
            if delay:
                await asyncio.sleep(delay)
            try:
                await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):  # peer gone or socket closing: stop sending
                self.closed = True
                return
            self.sent_frames += 1
            if snapshot:
                self.hub.sent.snapshot(self.protocol, symbol, ident, values)
            elif channel is not None:
                self.hub.sent.sent(self.protocol, symbol, channel, ident, values)

    async def _heartbeats(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.heartbeat_interval)
            if not self.closed:
                self.heartbeat()

    async def serve(self) -> web.WebSocketResponse:
        """Run the connection until either side closes it."""
        hub = self.hub
        hub.connections.add(self)
        hub.sent.connections_opened += 1
        hub.sent.connections_open += 1
        sender = asyncio.create_task(self.sender())
        beats = asyncio.create_task(self._heartbeats()) if self.heartbeat_interval else None
        try:
            async for msg in self.ws:
                if msg.type == web.WSMsgType.TEXT and not self.stalled():
                    await self.on_text(msg.data)
                elif msg.type == web.WSMsgType.ERROR:
                    break
        except ConnectionError:
            pass
        finally:
            self.closed = True
            sender.cancel()
            if beats is not None:
                beats.cancel()
            for key in list(self.subscriptions):
                self.unsubscribe(*key)
            hub.connections.discard(self)
            hub.sent.connections_open -= 1
        return self.ws


class Hub:
    """Routes events to subscribed connections and owns the connection-level fault switches."""

    def __init__(self, books: dict[str, BookState], sent: SentLog):
        self.books = books
        self.sent = sent
        self.subscribers: dict[tuple[str, str], set[Connection]] = {}
        self.connections: set[Connection] = set()
        self.book_filter = None  # set by Faults: (BookUpdate) -> BookUpdate | None (None = drop)
        # symbols with a book subscription whose REST snapshot has not been served yet (Binance):
        # a diff dropped now would be covered by that snapshot, so gap faults wait
        self.awaiting_snapshot: set[str] = set()
        self._slow_delay = 0.0
        self._slow_until = 0.0
        self.windows: dict[str, TopWindow] = {}  # symbol -> top-N window served by a depth-limited feed
        # called with (update, book) after every book update is applied (tests: the authoritative book)
        self.book_observers: list = []
        self.refused: set[tuple[str, str]] = set()  # (symbol, channel) no longer served (`refuse` fault)

    def window(self, symbol: str, depth: int) -> TopWindow:
        """The symbol's top-`depth` window, created from the current book on first use."""
        window = self.windows.get(symbol)
        if window is None:
            book = self.books[symbol]
            window = self.windows[symbol] = TopWindow(book.bids, book.asks, depth)
        return window

    def publish(self, event: Event) -> None:
        if isinstance(event, BookUpdate):
            book = self.books[event.symbol]
            filtered = self.book_filter(event) if self.book_filter else event
            applied = event if filtered is None else filtered
            book.apply(applied)
            window = self.windows.get(event.symbol)
            if window is not None:
                window.advance(book.bids, book.asks, applied)
            for observer in self.book_observers:
                observer(applied, book)
            if filtered is None:
                for protocol in self.protocols_subscribed(event.symbol, event.channel):
                    self.sent.dropped(protocol, event.symbol, event.first_id, event.last_id)
                return
            event = filtered
        for conn in list(self.subscribers.get((event.symbol, event.channel), ())):
            conn.deliver(event)

    def protocols_subscribed(self, symbol: str, channel: str) -> set[str]:
        return {c.protocol for c in self.subscribers.get((symbol, channel), ())}

    # -- connection-level faults -----------------------------------------------------------
    def slow_delay(self) -> float:
        return self._slow_delay if asyncio.get_running_loop().time() < self._slow_until else 0.0

    def set_slow(self, delay: float, seconds: float | None) -> None:
        self._slow_delay = delay
        self._slow_until = math.inf if seconds is None else asyncio.get_running_loop().time() + seconds

    def stall(self, seconds: float | None, protocol: str | None = None) -> int:
        until = math.inf if seconds is None else asyncio.get_running_loop().time() + seconds
        conns = self._select(protocol)
        for conn in conns:
            conn.stalled_until = until
        return len(conns)

    def resume(self) -> None:
        self._slow_until = 0.0
        self.refused.clear()
        for conn in self.connections:
            conn.stalled_until = 0.0

    async def disconnect(self, protocol: str | None = None, abrupt: bool = False) -> int:
        conns = self._select(protocol)
        for conn in conns:
            if abrupt:
                conn.abort()
            else:
                conn.closed = True
                await conn.ws.close(code=1001, message=b"loopback disconnect fault")
        return len(conns)

    def send_malformed(self, symbol: str | None, protocol: str | None) -> int:
        """A truncated JSON frame to every matching connection (subscribed to `symbol` if given)."""
        count = 0
        for conn in self._select(protocol):
            if symbol is None or any(s == symbol for s, _ in conn.subscriptions):
                conn.enqueue('{"e":"depthUpdate","E":1,"s":')  # cut mid-object on purpose
                count += 1
        self.sent.malformed_sent += count
        return count

    def _select(self, protocol: str | None) -> list[Connection]:
        return [c for c in self.connections if protocol is None or c.protocol == protocol]
