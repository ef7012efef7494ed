"""A hostile or broken subscription request, a flood of connections or a full endpoint: one clear `error` frame.

Why: the request is the only input a subscriber gives the ETL.  JSON nested thousands deep,
a `since` of 1e400 (json reads it as infinity), NaN or a time past int64 used to escape the
request check as RecursionError, OverflowError or ValueError: the Unix socket then closed
without a word and the WebSocket handler died with a traceback.  Here: the real hub on its
Unix socket and WebSocket, raw requests, and a well-formed subscriber served after them.
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from live_support import rows_table, running_hub, wait_for
from fluxforge.live.protocol import RequestError, parse_request

T0 = 1_733_130_000_000
HOSTILE = {  # request line -> what its error must say
    b"[" * 5000 + b"]" * 5000: "nested too deeply",
    b'{"hf": ' * 3000 + b"1" + b"}" * 3000: "nested too deeply",
    b'{"since": 1e400}': "since: inf is not a time",
    b'{"since": NaN}': "since: nan is not a time",
    b'{"since": -Infinity}': "since: -inf is not a time",
    b'{"since": 1' + b"0" * 30 + b"}": "since: 1" + "0" * 30 + " is out of range",
    b'{"last_minutes": 1e400}': "last_minutes: expected a positive number of minutes",
    b'{"last_minutes": 1e308}': "last_minutes: expected a positive number of minutes",
    b'{"last_minutes": NaN}': "last_minutes: expected a positive number of minutes",
    b'{"resume": {"hf": {"binance": {"BTC/USDT": -1' + b"0" * 20 + b"}}}}": "resume hf binance BTC/USDT: -1" + "0" * 20,
}


async def _unix(hub, line: bytes) -> dict:
    reader, writer = await asyncio.open_unix_connection(str(hub.socket_path), limit=1 << 22)
    writer.write(line + b"\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    assert head, "the endpoint closed without a word"
    return json.loads(head)


async def _websocket(hub, line: bytes) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"ws://127.0.0.1:{hub.endpoints.ws_port}/live") as ws:
            await ws.send_str(line.decode())
            msg = await asyncio.wait_for(ws.receive(), 30)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            return json.loads(msg.data)


def test_hostile_requests_are_refused_by_name_on_both_endpoints_and_serving_goes_on():
    async def scenario():
        async with running_hub(replay_rows=1000, replay_minutes=24 * 60, port=0) as hub:
            hub.publish("hf", rows_table("binance", "BTC/USDT", T0, 10))
            answers = [(line, await send(hub, line)) for line in HOSTILE for send in (_unix, _websocket)]
            after = await _unix(hub, b'{"since": 0}')
            return answers, after, hub.counters["subscribed"], len(hub.subscribers)

    answers, after, subscribed, connected = asyncio.run(scenario())
    for line, head in answers:
        assert head["type"] == "error" and HOSTILE[line] in head["error"], (line[:60], head)
    assert after["type"] == "subscribed" and after["replay_rows"] == 10, after
    assert subscribed == 1  # none of the hostile ones was subscribed, even for a moment


def test_an_error_of_the_endpoint_itself_is_named_to_the_subscriber_and_logged(monkeypatch, capsys):
    """A request the checks passed but the hub failed on (a bug) still gets an `error` frame, not
    a silent close, and the traceback is in the journal as `live_request_failed`."""
    async def scenario():
        async with running_hub(port=0) as hub:
            def broken(request, sink):
                raise ZeroDivisionError("a bug")
            monkeypatch.setattr(hub, "subscribe", broken)
            return await _unix(hub, b"{}"), await _websocket(hub, b"{}")

    for head in asyncio.run(scenario()):
        assert head == {"type": "error", "error": "internal error: ZeroDivisionError (logged as live_request_failed)"}
    logged = capsys.readouterr()
    assert (logged.out + logged.err).count("live_request_failed") >= 2


@pytest.mark.parametrize("request_", [{"since": 2 ** 63 - 1}, {"since": -(2 ** 63)}, {"since": 1733130000000.5},
                                      {"last_minutes": 1e9}, {"resume": {"hf": {"b": {"X/Y": 2 ** 63 - 1}}}}])
def test_the_extremes_of_what_is_valid_are_accepted(request_):
    req = parse_request(json.dumps(request_))
    assert req.replay_from_ms(now=0.0) is not None or req.resume


@pytest.mark.parametrize("request_", [{"since": 2 ** 63}, {"last_minutes": 1e9 + 1}, {"resume": {"hf": {"b": {"X/Y": 2 ** 63}}}}])
def test_just_past_them_is_refused(request_):
    with pytest.raises(RequestError):
        parse_request(json.dumps(request_))


@pytest.mark.parametrize("last", ["inf", "nan", "1e400", "0", "-5"])
def test_fluxforge_live_refuses_a_replay_window_that_is_not_a_number_of_minutes(last, tmp_path):
    run = subprocess.run([sys.executable, "-m", "fluxforge.cli", "live", "--last", last, "--json",
                          "--socket", str(tmp_path / "live.sock")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "--last: expected a positive number of minutes, at most 1e+09" in run.stderr, run.stderr


def test_a_flood_of_connections_that_never_ask_cannot_take_the_etls_file_descriptors():
    """A client stuck in a reconnect loop: 300 connections that send nothing, from another process.
    At most etl.live.max_subscribers wait for their request (each up to 10 s); the rest are refused
    at once and their descriptors closed, so the ETL keeps descriptors for its own files.  Meanwhile a
    new subscriber is told why it is refused; once the flood ends, it is served.  Those that closed
    without a request were never subscribed."""
    async def scenario():
        async with running_hub(max_subscribers=4) as hub:
            hub.publish("hf", rows_table("binance", "BTC/USDT", T0, 10))
            flood = _flood(str(hub.socket_path), 300)
            base = _descriptors()  # its pipes open; no connection accepted before the loop runs
            try:
                assert (await asyncio.to_thread(flood.stdout.readline)).strip() == "connected"
                await wait_for(lambda: hub.counters["refused"] >= 300 - 4, what="the flood refused")
                held = lambda: _descriptors() - base  # noqa: E731
                # the 4 waiting; a refused connection's socket is closed a loop turn after its refusal
                await wait_for(lambda: held() <= 4, what="the refused connections' descriptors closed")
                still_held = held()
                during = await _unix(hub, b'{"since": 0}')
            finally:
                flood.stdin.close()
                flood.wait(30)
            refused = hub.counters["refused"]
            after = await _unix(hub, b'{"since": 0}')
            while after["type"] == "error" and "waiting" in after["error"]:  # the 4 not yet seen closing
                await asyncio.sleep(0.05)
                after = await _unix(hub, b'{"since": 0}')
            return refused, still_held, during, after, hub.counters["subscribed"]

    refused, held, during, after, subscribed = asyncio.run(scenario())
    assert refused == 300 - 4 + 1  # the flood's, then the subscriber's during it
    assert held == 4, held  # the 4 waiting
    assert during["type"] == "error" and "too many connections waiting to subscribe (4" in during["error"], during
    assert after["type"] == "subscribed" and after["replay_rows"] == 10, after
    assert subscribed == 1  # the 4 that waited closed without a request: nobody else was subscribed


def test_a_full_endpoint_says_retry_and_a_reconnecting_subscriber_waits_it_out():
    """max_subscribers reached: the refusal says `"retry": true`; subscribe() raises LiveBusy (a
    LiveError, as before); subscribe(reconnect=True) retries and is served once a place frees."""
    from fluxforge.live import LiveBusy, LiveError, subscribe

    async def first(**kw):
        async for row in subscribe(**kw):
            return row

    async def scenario():
        async with running_hub(max_subscribers=1) as hub:
            sock = str(hub.socket_path)
            held = await asyncio.open_unix_connection(sock)
            held[1].write(b"{}\n")
            await held[1].drain()
            assert json.loads(await held[0].readline())["type"] == "subscribed"
            frame = await _unix(hub, b"{}")
            with pytest.raises(LiveError) as plain:
                await first(socket=sock)
            retries = []
            waiting = asyncio.create_task(first(socket=sock, reconnect=True, on_retry=lambda e, d: retries.append(e)))
            await wait_for(lambda: len(retries) >= 2, what="two retries of the reconnecting subscriber")
            held[1].close()  # a place frees
            await wait_for(lambda: not hub.subscribers, what="the held subscriber gone")
            await wait_for(lambda: hub.subscribers, 60, what="the reconnecting subscriber served (its back-off)")
            hub.publish("hf", rows_table("binance", "BTC/USDT", T0, 1))  # live only: a row after it subscribed
            return frame, plain.value, retries, await asyncio.wait_for(waiting, 60)

    frame, plain, retries, row = asyncio.run(scenario())
    assert frame == {"type": "error", "error": "too many subscribers (1, etl.live.max_subscribers)", "retry": True}
    assert isinstance(plain, LiveBusy) and "too many subscribers" in str(plain)
    assert all(isinstance(e, LiveBusy) for e in retries)
    assert row["symbol"] == "BTC/USDT" and row["product"] == "hf"


async def _with_ws_subscriber(during) -> dict:
    """A hub (max_subscribers 4) with a WebSocket subscriber of everything; `during(hub, port)` runs,
    then a row is published: the row the subscriber gets, and what `during` returned."""
    async with running_hub(port=0, max_subscribers=4) as hub:
        port = hub.endpoints.ws_port
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://127.0.0.1:{port}/live") as ws:
                await ws.send_str("{}")
                assert json.loads((await ws.receive()).data)["type"] == "subscribed"
                result = await during(hub, port)
                hub.publish("hf", rows_table("binance", "BTC/USDT", T0, 1))
                while (head := json.loads((await asyncio.wait_for(ws.receive(), 30)).data))["type"] != "row":
                    pass
    return head, result


_FLOOD = """
import socket, sys
address, n = sys.argv[1], int(sys.argv[2])
conns = []
for _ in range(n):
    if address.isdigit():  # the WebSocket port
        c = socket.create_connection(("127.0.0.1", int(address)))
    else:  # the Unix socket
        c = socket.socket(socket.AF_UNIX)
        c.connect(address)
    conns.append(c)
print("connected", flush=True)
sys.stdin.read()  # hold them until told
"""


def _flood(address: str | int, n: int, preexec_fn=None):
    """n connections that never send a request, from another process: to the Unix socket at
    `address`, or to the WebSocket port `address`; it prints `connected`, then holds them until its
    stdin closes.  preexec_fn: run in that process before it starts (e.g. its own limits)."""
    return subprocess.Popen([sys.executable, "-c", _FLOOD, str(address), str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=preexec_fn)


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_idle_connections_to_the_websocket_port_are_capped(monkeypatch):
    """The flood on the WebSocket port (aiohttp kept every idle connection for 75 s, without a
    limit): at most 2 x max_subscribers are open, a subscriber's included; the rest are closed at
    once.  (REQUEST_TIMEOUT is long here, so which ones are closed does not depend on timing.)"""
    from fluxforge.live import endpoint
    monkeypatch.setattr(endpoint, "REQUEST_TIMEOUT", 600.0)

    async def flood_it(hub, port):
        flood = _flood(port, 300)
        base = _descriptors()  # the subscriber's two ends and the flood's pipes
        try:
            assert (await asyncio.to_thread(flood.stdout.readline)).strip() == "connected"
            await wait_for(lambda: hub.counters["refused"] >= 300 - (2 * 4 - 1), what="the flood refused")
            await wait_for(lambda: _descriptors() - base <= 2 * 4 - 1, what="the refused ones closed")
            return _descriptors() - base, hub.counters["refused"]
        finally:
            flood.stdin.close()
            flood.wait(30)

    row, (held, refused) = asyncio.run(_with_ws_subscriber(flood_it))
    assert refused == 300 - (2 * 4 - 1) and held == 2 * 4 - 1
    assert row["symbol"] == "BTC/USDT"  # the subscriber was served through it


def test_a_websocket_connection_without_a_request_is_closed_after_request_timeout(monkeypatch):
    """...and one that sends no request is closed after REQUEST_TIMEOUT (here 1 s), while a subscriber
    connected for longer keeps getting rows (the timeout ends the wait for a request only)."""
    from fluxforge.live import endpoint
    monkeypatch.setattr(endpoint, "REQUEST_TIMEOUT", 1.0)

    async def idle(hub, port):
        subscribed_at = time.monotonic()
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for reader, writer in idle:  # the endpoint closes them: end of stream, nothing sent
            assert await asyncio.wait_for(reader.read(), 30) == b""
            writer.close()
        await wait_for(lambda: time.monotonic() - subscribed_at > 2.0, what="twice REQUEST_TIMEOUT")

    row, _ = asyncio.run(_with_ws_subscriber(idle))
    assert row["symbol"] == "BTC/USDT"


def test_an_open_files_limit_too_low_for_max_subscribers_caps_the_places_not_the_etls_files():
    """etl.live.max_subscribers 100 under a soft RLIMIT_NOFILE with room for 8 places (an ETL run by
    hand; the unit sets LimitNOFILE=65536): the hub offers 8, says so at start, refuses the rest of a
    300-connection flood by that name, and the process can still open RESERVED_DESCRIPTORS - 100 files
    for its own work during the flood.  Before, the flood took every descriptor up to the limit.
    In a process of its own (`_capped_hub`), started with few descriptors open, as the ETL is."""
    here = Path(__file__).resolve().parent
    code = f"import sys; sys.path[:0] = [{str(here)!r}, {str(here.parent)!r}]; " \
           "from test_live_bad_requests import _capped_hub; _capped_hub()"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["places"] == 8
    assert result["frame"] == {"type": "error", "retry": True,
                               "error": "too many connections waiting to subscribe (8, the ETL's open-files limit)"}
    assert result["opened"] == result["wanted"]
    line = next(x for x in (run.stdout + run.stderr).splitlines() if "live_subscribers_capped" in x)
    for field, value in (("places", 8), ("max_subscribers", 100), ("open_files_limit", result["soft"])):
        assert f"{field}={value}" in line or f'"{field}": {value}' in line, line


def _capped_hub() -> None:
    """`test_an_open_files_limit_too_low...`'s process: a hub under the lowered limit, flooded; prints
    what it saw as a JSON line."""
    from fluxforge.live.hub import DESCRIPTORS_PER_PLACE, RESERVED_DESCRIPTORS

    original = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = RESERVED_DESCRIPTORS + 8 * DESCRIPTORS_PER_PLACE
    wanted = RESERVED_DESCRIPTORS - 100
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, original[1]))

    async def scenario():
        async with running_hub(max_subscribers=100) as hub:
            flood = _flood(str(hub.socket_path), 300,
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, original))
            try:
                assert (await asyncio.to_thread(flood.stdout.readline)).strip() == "connected"
                await wait_for(lambda: hub.counters["refused"] >= 300 - 8, what="the flood refused")
                frame = await _unix(hub, b"{}")  # while 8 wait for their request
                opened = []
                try:
                    while len(opened) < wanted:
                        opened.append(os.open("/dev/null", os.O_RDONLY))
                finally:
                    for fd in opened:
                        os.close(fd)
            finally:
                flood.stdin.close()
                flood.wait(30)
            return {"places": hub.max_subscribers, "frame": frame, "opened": len(opened), "wanted": wanted,
                    "soft": soft}

    print(json.dumps(asyncio.run(scenario())), flush=True)


@pytest.mark.parametrize("configured, soft, places", [(64, 1024, 64), (1000, 1024, 192), (10_000, 65536, 10_000),
                                                      (5, 200, 1), (7, resource.RLIM_INFINITY, 7)])
def test_subscriber_places_leave_the_reserve_to_the_etl(configured, soft, places):
    from fluxforge.live.hub import subscriber_places
    assert subscriber_places(configured, soft) == places
