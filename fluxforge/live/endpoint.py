"""The live endpoints: a Unix socket (JSON lines / Arrow frames) and an optional WebSocket.

Why both: the Unix socket is the default because the file system already says
who may connect (the socket is 0660 in a 0750 directory of group fluxforge), so
no secret is needed on the box; the WebSocket (aiohttp, already a dependency of
ccxt and the loopback exchange) is for consumers that speak HTTP, on 127.0.0.1
unless a token is configured.

Why binding never raises: a socket path that cannot be created yet, or a port
still held by a previous process, is something time or an operator fixes
(DESIGN decision 10), so the ETL keeps computing and retries every
RETRY_SECONDS, logging `live_listen_failed`.
"""
from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from ..logs import get_logger
from . import wire
from .protocol import MAX_REQUEST_BYTES, BusyError, RequestError, parse_request

log = get_logger("fluxforge.live")
RETRY_SECONDS = 30.0
REQUEST_TIMEOUT = 10.0
LAST_WORDS_GRACE = 2.0
MAX_SOCKET_PATH = 107  # bytes of a Unix socket path (sun_path holds 108, the last a NUL)


class StreamSink:
    """A subscriber on the Unix socket: frames are a JSON line plus optional raw bytes."""

    def __init__(self, writer: asyncio.StreamWriter, peer: str):
        self.writer = writer
        self.peer = peer

    async def send(self, frames: list[wire.Frame]) -> None:
        for head, payload in frames:
            self.writer.write(head.encode() + b"\n" + (payload or b""))
        await self.writer.drain()

    def last_words(self, frame: wire.Frame) -> None:
        transport = self.writer.transport
        if transport.is_closing():
            return
        head, payload = frame
        transport.write(head.encode() + b"\n" + (payload or b""))
        transport.close()  # flushes what the kernel still takes, then closes; abort if it never does
        asyncio.get_running_loop().call_later(LAST_WORDS_GRACE, transport.abort)


class WebSocketSink:
    """A subscriber on the WebSocket: a text message per header, a binary message per payload."""

    def __init__(self, ws, peer: str):
        self.ws = ws
        self.peer = peer

    async def send(self, frames: list[wire.Frame]) -> None:
        for head, payload in frames:
            await self.ws.send_str(head)
            if payload is not None:
                await self.ws.send_bytes(payload)

    def last_words(self, frame: wire.Frame) -> None:
        async def say():
            try:
                await asyncio.wait_for(self.ws.send_str(frame[0]), LAST_WORDS_GRACE)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                pass
            try:
                await asyncio.wait_for(self.ws.close(code=1008 if '"dropped"' in frame[0] else 1001), LAST_WORDS_GRACE)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                pass
        asyncio.get_running_loop().create_task(say())


class LiveEndpoints:
    def __init__(self, hub):
        self.hub = hub
        self.cfg = hub.cfg
        self.socket_path: Path = hub.socket_path
        self._unix = None
        self._web = None
        self.ws_port: int | None = None
        self._retry: asyncio.Task | None = None
        self._handlers: set[asyncio.Task] = set()
        self._waiting = 0  # connections that have not subscribed yet (each may wait REQUEST_TIMEOUT)

    async def start(self) -> None:
        if not await self._bind():
            self._retry = asyncio.create_task(self._keep_trying())

    async def _keep_trying(self) -> None:
        while not await self._bind():
            await asyncio.sleep(RETRY_SECONDS)

    async def _bind(self) -> bool:
        ok = True
        if self._unix is None:
            try:
                self._unix = await self._bind_unix()
                log.info("live_listening", socket=str(self.socket_path))
            except OSError as e:
                ok = False
                log.warning("live_listen_failed", socket=str(self.socket_path), error=e.strerror or str(e),
                            retry_seconds=RETRY_SECONDS)
        if self.cfg.port is not None and self._web is None:
            try:
                self._web = await self._bind_ws()
                log.info("live_listening", websocket=f"ws://{self.cfg.listen}:{self.ws_port}/live")
            except OSError as e:
                ok = False
                log.warning("live_listen_failed", address=self.cfg.listen, port=self.cfg.port,
                            error=e.strerror or str(e), retry_seconds=RETRY_SECONDS)
        return ok

    async def _bind_unix(self):
        path = self.socket_path
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise OSError(f"socket path longer than {MAX_SOCKET_PATH} bytes: {path} (set etl.live.socket)")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket() or path.exists():
            if _answers(path):
                raise OSError(f"{path} is in use by another live endpoint")
            path.unlink()  # left by a process that died
        server = await asyncio.start_unix_server(self._on_stream, path=str(path), limit=MAX_REQUEST_BYTES)
        os.chmod(path, 0o660)  # group fluxforge may connect; UMask=0027 would leave it 0750
        return server

    async def _bind_ws(self):
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/live", self._on_websocket)
        # keepalive_timeout: aiohttp closes a connection that sends no request within it, from its start
        runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=REQUEST_TIMEOUT)
        await runner.setup()
        _cap_connections(runner.server, 2 * self.hub.max_subscribers, self.hub)
        site = web.TCPSite(runner, self.cfg.listen, self.cfg.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self.ws_port = site._server.sockets[0].getsockname()[1]
        return runner

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        if self._unix is not None:
            self._unix.close()
            try:
                self.socket_path.unlink()
            except OSError:
                pass
        for task in list(self._handlers):
            task.cancel()
        if self._web is not None:
            await self._web.cleanup()

    # -- connections ------------------------------------------------------------------------
    async def _on_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        sink = StreamSink(writer, _peer(writer))
        try:
            try:
                self._wait_turn()
                try:
                    line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
                except ValueError:  # the StreamReader's limit: no newline within it
                    raise RequestError(f"request too long (over {MAX_REQUEST_BYTES} bytes)") from None
                finally:
                    self._waiting -= 1
                if not line:
                    writer.close()
                    return  # closed without a request: nobody to answer
                request = parse_request(line)
                sub = self.hub.subscribe(request, sink)
            except (ConnectionError, asyncio.IncompleteReadError):
                raise  # the subscriber is gone: nobody to tell
            except Exception as e:  # noqa: BLE001 -- whatever a request does, its sender is told why
                self._refuse(sink, _refusal(e, sink.peer))
                return
            watcher = asyncio.create_task(_until_eof(reader))
            watcher.add_done_callback(lambda _t: self.hub.disconnect(sub))
            try:
                await self.hub.serve(sub)
            finally:
                watcher.cancel()
                if not writer.transport.is_closing():
                    writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)

    async def _on_websocket(self, http_request):
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(max_msg_size=MAX_REQUEST_BYTES)
        await ws.prepare(http_request)
        sink = WebSocketSink(ws, http_request.remote or "?")
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            self._wait_turn()
            try:
                msg = await asyncio.wait_for(ws.receive(), REQUEST_TIMEOUT)
            finally:
                self._waiting -= 1
            if msg.type != WSMsgType.TEXT:
                raise RequestError("the first message must be the subscription request (text)")
            auth = http_request.headers.get("Authorization", "")
            bearer = auth[7:] if auth.startswith("Bearer ") else None
            request = parse_request(msg.data)
            self.hub.check_token(request, bearer)
            sub = self.hub.subscribe(request, sink)
        except Exception as e:  # noqa: BLE001 -- whatever a request does, its sender is told why
            refusal = _refusal(e, sink.peer)
            log.info("live_refused", peer=sink.peer, reason=refusal["error"])
            try:
                await ws.send_str(wire.header("error", **refusal))
                await ws.close(code=1008)
            except (ConnectionError, RuntimeError):
                pass
            return ws
        finally:
            if ws.closed:
                self._handlers.discard(task)
        watcher = asyncio.create_task(_ws_until_closed(ws))
        watcher.add_done_callback(lambda _t: self.hub.disconnect(sub))
        try:
            await self.hub.serve(sub)
        finally:
            watcher.cancel()
            self._handlers.discard(task)
            if not ws.closed:
                await ws.close()
        return ws

    def _wait_turn(self) -> None:
        """Count a connection waiting for its request, or refuse it: at most as many wait as may
        subscribe (LiveHub.max_subscribers), so a client stuck in a reconnect loop cannot take
        every file descriptor of the ETL (its segment job needs them) for REQUEST_TIMEOUT each."""
        if self._waiting >= self.hub.max_subscribers:
            self.hub.counters["refused"] += 1
            raise BusyError(f"too many connections waiting to subscribe ({self.hub.max_subscribers}, "
                            f"{self.hub.places_source()})")
        self._waiting += 1

    def _refuse(self, sink, refusal: dict) -> None:
        log.info("live_refused", peer=sink.peer, reason=refusal["error"])
        sink.last_words((wire.header("error", **refusal), None))


def _cap_connections(server, limit: int, hub) -> None:
    """Close a connection to the WebSocket port at once while `limit` are open (aiohttp's Server has
    no limit of its own; each holds a descriptor): room for every subscriber and as many waiting to
    send their request, as on the Unix socket (LiveEndpoints._wait_turn)."""
    made = server.connection_made

    def connection_made(handler, transport) -> None:
        made(handler, transport)
        if len(server.connections) > limit:
            hub.counters["refused"] += 1
            asyncio.get_running_loop().call_soon(transport.close)  # once aiohttp has started its handler

    server.connection_made = connection_made


def _refusal(e: Exception, peer: str) -> dict:
    """The `error` frame's fields for a refused subscriber: the request's fault as RequestError
    says it (`retry` when the endpoint is only full for now: BusyError); the endpoint's own,
    logged with its traceback (`live_request_failed`), as an internal error."""
    if isinstance(e, RequestError):
        return {"error": str(e), **({"retry": True} if isinstance(e, BusyError) else {})}
    if isinstance(e, asyncio.TimeoutError):
        return {"error": f"no subscription request within {REQUEST_TIMEOUT:g}s"}
    log.exception("live_request_failed", peer=peer)
    return {"error": f"internal error: {type(e).__name__} (logged as live_request_failed)"}


async def _until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(4096):
        pass


async def _ws_until_closed(ws) -> None:
    async for _msg in ws:
        pass


def _peer(writer: asyncio.StreamWriter) -> str:
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        pid, uid, _gid = (int.from_bytes(creds[i:i + 4], "little") for i in (0, 4, 8))
        return f"pid {pid} uid {uid}"
    except (OSError, AttributeError):
        return "unix"


def _answers(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()

