"""A reconnect replays each stream from its own last row, not the whole ring (live/protocol.py `resume`).

Why: a reconnecting subscriber used to ask for everything since the oldest last row of any
stream minus the longest bar interval it subscribes to -- for a subscription to every
product (3600 s trade bars) the whole ring, up to `replay_mb` of rows to send and drop
again.  Here: the real hub on its Unix socket, raw requests and the real client.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from live_support import rows_table, running_hub, wait_for
from fluxforge.live.protocol import RequestError, parse_request

T0 = 1_733_130_000_000


async def _replay(hub, request: dict) -> tuple[dict, list[tuple]]:
    """The `subscribed` frame and the replayed rows (product, symbol, seq) up to the `live` mark."""
    reader, writer = await asyncio.open_unix_connection(str(hub.socket_path), limit=1 << 22)
    writer.write((json.dumps(request) + "\n").encode())
    await writer.drain()
    subscribed, rows = None, []
    while True:
        head = json.loads(await reader.readline())
        if head["type"] == "subscribed":
            subscribed = head
        elif head["type"] == "row":
            assert head["replay"] is True
            rows.append((head["product"], head["symbol"], head["seq"]))
        elif head["type"] == "live":
            writer.close()
            return subscribed, rows


def _publish(hub) -> None:
    """Two streams of hf (rows a second apart) and one of hourly bars (two rows)."""
    hub.publish("hf", rows_table("binance", "BTC/USDT", T0, 100))
    hub.publish("hf", rows_table("binance", "ETH/USDT", T0, 100))
    hub.publish("trade_bars/interval=3600s", rows_table("binance", "BTC/USDT", T0 - 3_600_000, 2, 3_600_000))


def test_each_stream_named_in_resume_replays_from_its_point_and_the_others_from_since():
    async def scenario():
        async with running_hub(replay_rows=100_000, replay_minutes=24 * 60) as hub:
            _publish(hub)
            both = await _replay(hub, {"since": T0 - 3_600_000,  # what the old reconnect asked for
                                       "resume": {"hf": {"binance": {"BTC/USDT": T0 + 97_000, "ETH-USDT": T0 + 98_000}}}})
            since_only = await _replay(hub, {"since": T0 - 3_600_000})
            resume_only = await _replay(hub, {"resume": {"hf": {"binance": {"BTC/USDT": T0 + 99_000}}}})
            return both, since_only, resume_only

    (sub, rows), (_, everything), (_, one) = asyncio.run(scenario())
    # the named streams from their points (ETH's spelled as its partition), the bars from since
    assert rows == [("hf", "BTC/USDT", T0 + 97 + i) for i in range(3)] + [("hf", "ETH/USDT", T0 + 98 + i) for i in range(2)] \
        + [("trade_bars/interval=3600s", "BTC/USDT", T0 - 3_600_000 + i) for i in range(2)], rows
    assert sub["resume_streams"] == 2 and sub["replay_rows"] == 7 and sub["replay_left_out"] == 0
    assert len(everything) == 202  # without resume: the whole ring
    assert one == [("hf", "BTC/USDT", T0 + 99)]  # resume and no since: the other streams live only


def test_a_replay_beyond_the_buffer_says_how_many_rows_it_left_out():
    async def scenario():
        async with running_hub(replay_rows=100_000, replay_minutes=24 * 60, buffer_rows=50) as hub:
            _publish(hub)
            return await _replay(hub, {"since": T0})

    sub, rows = asyncio.run(scenario())
    assert sub["replay_rows"] == len(rows) <= 50 and sub["replay_left_out"] == 201 - len(rows) > 0


@pytest.mark.parametrize("resume", [[1], {"hf": []}, {"hf": {"binance": {"BTC/USDT": "soon"}}},
                                    {"hf": {"binance": {"BTC/USDT": True}}}, {"": {"binance": {"BTC/USDT": 1}}}])
def test_a_malformed_resume_is_refused(resume):
    with pytest.raises(RequestError, match="resume: expected"):
        parse_request({"resume": resume})


def test_a_reconnecting_client_asks_for_its_streams_from_their_last_rows(tmp_path):
    """The hub goes away and a new one with the same ring comes up (an ETL restart): the client's
    second request names each stream it delivered, so the replay it gets is each stream's last
    row (dropped by the client as a repeat), not the ring since an hour before the oldest of them;
    every row is delivered once."""
    from fluxforge.live.client import frames
    from fluxforge.live.hub import LiveHub
    from fluxforge.live.settings import LiveConfig

    cfg = LiveConfig(replay_rows=100_000, replay_minutes=24 * 60)
    sock = tmp_path / "live.sock"
    subscribed, rows = [], []

    async def scenario():
        hub = LiveHub(cfg, socket_path=sock)
        await hub.start()
        _publish(hub)

        async def reader():
            async for head, _ in frames(socket=sock, since=T0 - 3_600_000, reconnect=True, on_retry=lambda e, d: None):
                if head["type"] == "subscribed":
                    subscribed.append(head)
                elif head["type"] == "row":
                    rows.append((head["product"], head["symbol"], head["seq"], head["replay"]))
                    if head["seq"] == T0 + 100:
                        return
        task = asyncio.create_task(reader())
        await wait_for(lambda: len(rows) == 202, what="the first replay")
        await hub.close()
        hub = LiveHub(cfg, socket_path=sock)
        _publish(hub)  # the restarted ETL's ring: the same rows again
        await hub.start()
        await wait_for(lambda: len(subscribed) == 2, what="the reconnect")
        hub.publish("hf", rows_table("binance", "BTC/USDT", T0 + 100, 1))
        await asyncio.wait_for(task, 30)
        await hub.close()

    asyncio.run(scenario())
    assert len(rows) == 203 == len({r[:3] for r in rows}) and rows[-1] == ("hf", "BTC/USDT", T0 + 100, False)
    assert subscribed[0]["replay_rows"] == 202
    assert subscribed[1]["resume_streams"] == 3 and subscribed[1]["replay_rows"] == 3  # each stream's last row


def test_a_resume_naming_thousands_of_streams_is_served_and_a_request_over_the_limit_refused():
    """20,000 streams (~900 kB: a fleet host's every product and symbol) fit the request; past
    MAX_REQUEST_BYTES the endpoint refuses with a clear error instead of reading on."""
    from fluxforge.live.protocol import MAX_REQUEST_BYTES

    many = {"hf": {"binance": {f"S{i:05d}/USDT": T0 for i in range(20_000)}}}
    many["hf"]["binance"]["BTC/USDT"] = T0 + 99_000

    async def refused(hub, line: bytes) -> dict:
        reader, writer = await asyncio.open_unix_connection(str(hub.socket_path))
        writer.write(line)
        await writer.drain()
        head = json.loads(await reader.readline())
        writer.close()
        return head

    async def over_websocket(hub, request: dict) -> tuple[dict, list]:
        import aiohttp
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://127.0.0.1:{hub.endpoints.ws_port}/live") as ws:
                await ws.send_str(json.dumps(request))
                sub, rows = None, []
                while True:
                    head = json.loads((await ws.receive()).data)
                    if head["type"] == "subscribed":
                        sub = head
                    elif head["type"] == "row":
                        rows.append((head["product"], head["symbol"], head["seq"]))
                    elif head["type"] == "live":
                        return sub, rows

    async def scenario():
        async with running_hub(replay_rows=100_000, replay_minutes=24 * 60, port=0) as hub:
            _publish(hub)
            ok = await _replay(hub, {"resume": many})
            ws = await over_websocket(hub, {"resume": many})
            too_long = await refused(hub, b'{"resume": {"hf": {"binance": {"' + b"x" * MAX_REQUEST_BYTES + b'": 1}}}}\n')
            return ok, ws, too_long

    (sub, rows), (ws_sub, ws_rows), too_long = asyncio.run(scenario())
    assert len(json.dumps({"resume": many})) < MAX_REQUEST_BYTES
    assert sub["resume_streams"] == 20_001 and rows == [("hf", "BTC/USDT", T0 + 99)]
    assert ws_sub["resume_streams"] == 20_001 and ws_rows == rows
    assert too_long["type"] == "error" and "request too long" in too_long["error"], too_long
