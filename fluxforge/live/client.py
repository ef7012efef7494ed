"""`fluxforge.live.subscribe()`: live feature rows as an async iterator (docs/live.md).

Why a client in the package: the wire format's promise (a row equals its
Parquet row, NaN and null included) holds only if the decoding is done right;
strategies get dicts exactly like `pyarrow.Table.to_pylist()` rows, or
`LiveBatch`es of pyarrow record batches, and never parse frames themselves.

The iterator ends only by an exception: `LiveDropped` when the endpoint dropped
this subscriber (too slow), `LiveClosed` when the connection ended (the ETL
stopped or restarted): reconnect with `since=` the last timestamp seen; rows
the ETL may have published before are flagged `replay`.  With `reconnect=True`
the iterator does that itself (live/resume.py) and ends only on a refusal.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import pyarrow as pa

from . import wire
from .protocol import MAX_REQUEST_BYTES, parse_since, request_json
from .resume import Resume

READ_LIMIT = 1 << 26  # a JSON row line of a very wide product still fits


class LiveError(Exception):
    """The endpoint refused the subscription (the message says why)."""


class LiveClosed(ConnectionError):
    """The connection ended (the ETL stopped, restarted or is not running)."""


class LiveBusy(LiveClosed, LiveError):
    """The endpoint refused the subscription for now: it has all the subscribers it takes
    (etl.live.max_subscribers).  A LiveError, and a LiveClosed: a reconnecting client tries again."""


class LiveDropped(LiveClosed):
    """The endpoint dropped this subscriber; `reason` is 'slow' or 'stalled'."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"dropped by the live endpoint ({reason}): {detail}")
        self.reason = reason


@dataclass(frozen=True)
class LiveBatch:
    product: str
    replay: bool
    batch: pa.RecordBatch


class _UnixFrames:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def next(self) -> tuple[dict, bytes | None]:
        try:
            line = await self.reader.readline()
        except ConnectionError as e:
            raise LiveClosed(f"the live endpoint's connection broke ({e})") from None
        if not line:
            raise LiveClosed("the live endpoint closed the connection")
        head = json.loads(line)
        size = head.get("size")
        try:
            return head, (await self.reader.readexactly(size) if size is not None else None)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise LiveClosed("the live endpoint closed the connection inside a frame") from None

    async def close(self) -> None:
        self.writer.close()


class _WebSocketFrames:
    def __init__(self, session, ws):
        self.session, self.ws = session, ws

    async def _receive(self):
        from aiohttp import WSMsgType

        msg = await self.ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
            raise LiveClosed("the live endpoint closed the WebSocket")
        return msg.data

    async def next(self) -> tuple[dict, bytes | None]:
        head = json.loads(await self._receive())
        return head, (await self._receive() if head.get("size") is not None else None)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def _open(request: str, socket: str | Path | None, url: str | None, token: str | None):
    if url is not None:
        import aiohttp

        session = aiohttp.ClientSession()
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            ws = await session.ws_connect(url, headers=headers, max_msg_size=READ_LIMIT)
        except (aiohttp.ClientConnectionError, OSError) as e:
            await session.close()
            raise LiveClosed(f"no live endpoint at {url} ({e})") from None
        except BaseException:
            await session.close()
            raise
        await ws.send_str(request)
        return _WebSocketFrames(session, ws)
    path = Path(socket) if socket is not None else default_socket()
    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=READ_LIMIT)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise LiveClosed(f"no live endpoint at {path} ({e.strerror}): is fluxforge-etl running "
                         f"with etl.live.enabled?") from None
    writer.write(request.encode() + b"\n")
    await writer.drain()
    return _UnixFrames(reader, writer)


def default_socket(config: str | Path | None = None) -> Path:
    """The socket of the config's ETL ($FLUXFORGE_CONFIG or /etc/fluxforge/config.yaml; defaults without one)."""
    from ..config import Config, ConfigError, config_path, load_config
    from .settings import client_socket_path

    try:
        cfg = load_config(config)
    except ConfigError:
        if config is not None or config_path(None).exists():
            raise
        cfg = Config()
    return client_socket_path(cfg.etl.live, cfg.state_dir)


RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0  # reconnect backoff: doubled per failed attempt, reset once subscribed


async def frames(*, products=None, exchanges=None, symbols=None, since=None, last_minutes=None,
                 format: str = "json", socket=None, url=None, token=None, reconnect: bool = False,
                 on_retry: Callable[[LiveClosed, float], None] | None = None) -> AsyncIterator[tuple[dict, bytes | None]]:
    """The raw frames from `subscribed` on (for tools that print the wire, like `fluxforge live`).

    reconnect: when the connection ends (the ETL stopped, restarted or dropped this subscriber:
    LiveClosed) connect again, after 0.5 s doubling to 30 s, for ever, and resume where the
    rows stopped (live/resume.py: every connection's frames from its `subscribed` on, rows
    already delivered left out); `on_retry(error, delay_s)` is told each time (default: a
    warning logged).  A refusal (LiveError) still ends it, unless the endpoint is only full for now
    (LiveBusy: tried again like a closed connection)."""
    as_list = (lambda v: [v] if isinstance(v, str) else (list(v) if v is not None else None))
    ask = dict(products=as_list(products), exchanges=as_list(exchanges), symbols=as_list(symbols), format=format)
    if not reconnect:
        async with aclosing(_connection(request_json(**ask, since=since, last_minutes=last_minutes, token=token),
                                        socket, url, token)) as connection:
            async for frame in connection:
                yield frame
        return
    try:
        resume = Resume(parse_since(since) if since is not None else None, last_minutes)
    except ValueError as e:
        raise LiveError(str(e)) from None
    request, delay = request_json(**ask, since=since, last_minutes=last_minutes, token=token), RETRY_FIRST_S
    while True:
        try:
            async with aclosing(_connection(request, socket, url, token)) as connection:
                async for head, payload in connection:
                    if head.get("type") == "subscribed":
                        delay = RETRY_FIRST_S
                        if head.get("replay_left_out"):
                            logging.getLogger(__name__).warning(
                                "the endpoint left out the oldest %s rows of the replay: they did not fit this "
                                "subscriber's buffer (etl.live.buffer_rows / buffer_mb)", head["replay_left_out"])
                    frame = resume.admit(head, payload)
                    if frame is not None:
                        yield frame
        except LiveClosed as e:
            (on_retry or _log_retry)(e, delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, RETRY_MAX_S)
            since_ms = resume.since_ms()
            request = request_json(**ask, since=since_ms, resume=resume.points(), token=token)
            if len(request) > MAX_REQUEST_BYTES:  # streams beyond counting: all from the oldest (slower, as exact)
                request = request_json(**ask, since=since_ms, token=token)


def _log_retry(error: LiveClosed, delay: float) -> None:
    logging.getLogger(__name__).warning("%s; reconnecting in %gs", error, delay)


async def _connection(request: str, socket, url, token) -> AsyncIterator[tuple[dict, bytes | None]]:
    """One connection's frames, `subscribed` first; LiveClosed when it ends."""
    if len(request) > MAX_REQUEST_BYTES:
        raise LiveError("subscription request too long")
    stream = await _open(request, socket, url, token)
    try:
        head, _ = await stream.next()
        if head.get("type") == "error":
            raise (LiveBusy if head.get("retry") else LiveError)(head.get("error", "refused"))
        yield head, None
        while True:
            head, payload = await stream.next()
            kind = head.get("type")
            if kind == "dropped":
                raise LiveDropped(head.get("reason", "?"), head.get("detail", ""))
            if kind == "closed":
                raise LiveClosed(f"the live endpoint closed the connection: {head.get('reason', '')}")
            yield head, payload
    finally:
        await stream.close()


async def subscribe(*, products: Any = None, exchanges: Any = None, symbols: Any = None, since: Any = None,
                    last_minutes: float | None = None, batches: bool = False, socket: str | Path | None = None,
                    url: str | None = None, token: str | None = None, reconnect: bool = False,
                    on_retry: Callable[[LiveClosed, float], None] | None = None) -> AsyncIterator[dict | LiveBatch]:
    """Rows (dicts, `to_pylist()` values plus `product` and `replay`) or, with batches=True, LiveBatch.

    products/exchanges/symbols: a name or a list (None: all); since: ms since the epoch or ISO time,
    or last_minutes: replay recent rows first (flagged replay=True), then live.  socket: the Unix
    socket (default: the config's); url: a WebSocket (ws://127.0.0.1:PORT/live) with `token`;
    reconnect: outlive ETL restarts and drops, every row delivered once (`frames`).

    Rows come over the Arrow wire too, made dicts here: a row encoded as JSON costs the ETL several
    times its share of an Arrow batch, and the ETL is what every subscriber shares."""
    schemas: dict[str, pa.Schema] = {}
    async with aclosing(frames(products=products, exchanges=exchanges, symbols=symbols, since=since,
                               last_minutes=last_minutes, format="arrow", socket=socket,
                               url=url, token=token, reconnect=reconnect, on_retry=on_retry)) as stream:
        async for head, payload in stream:
            kind = head.get("type")
            if kind == "schema":
                schemas[head["product"]] = wire.read_schema(head, payload)
            elif kind == "batch":
                batch = wire.read_batch(payload, schemas[head["product"]])
                if batches:
                    yield LiveBatch(head["product"], head["replay"], batch)
                    continue
                for row in batch.to_pylist():
                    yield {"product": head["product"], "replay": head["replay"], **row}
