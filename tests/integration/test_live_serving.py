"""Live serving over real sockets: round trip, filters, replay then live, slow subscribers, tokens.

Every subscriber is a real client (fluxforge.live.subscribe, a raw socket, or
`fluxforge live` as a subprocess) talking to the real hub over a real Unix socket
or WebSocket; nothing is mocked.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest
import yaml

from live_support import TS, json_wire_rows, rows_table, running_hub, same_rows, wait_for
from fluxforge.config import ConfigError, masked_dump, parse_config
from fluxforge.live import LiveBatch, LiveClosed, LiveDropped, LiveError, subscribe
from fluxforge.live.chunk import Chunk
from fluxforge.live.ring import RecentRows


async def collect(n: int, **kw) -> list:
    out = []
    async for item in subscribe(**kw):
        out.append(item)
        if len(out) >= n:
            return out
    return out


def expected(product: str, table: pa.Table, replay: bool = False) -> list[dict]:
    return [{"product": product, "replay": replay, **r} for r in table.to_pylist()]


def test_json_and_arrow_round_trip_over_unix_socket():
    hf = rows_table("binance", "BTC/USDT", 1_733_000_000_000, 50)
    bars = pa.table({"exchange": ["okx"] * 3, "symbol": ["ETH/USDT"] * 3,
                     "timestamp": pa.array([1, 2, 3], pa.int64()).cast(TS),
                     "close": [1.5, -math.inf, math.inf], "n": pa.array([1, None, 2**62], pa.int64()),
                     "flag": [True, None, False], "note": ["a", None, "ü\"\n"]})

    async def scenario():
        async with running_hub() as hub:
            rows = asyncio.create_task(collect(53, socket=hub.socket_path))
            batches = asyncio.create_task(collect(2, socket=hub.socket_path, batches=True))
            lines = asyncio.create_task(json_wire_rows(53, socket=hub.socket_path))
            await wait_for(lambda: len(hub.subscribers) == 3, what="three subscribers")
            hub.publish("hf", hf)
            # a publish from another thread (a worker) is handed to the loop, in order
            t = threading.Thread(target=hub.publish, args=("bars/interval=60s", bars))
            t.start()
            t.join()
            return [await asyncio.wait_for(t, 30) for t in (rows, batches, lines)]

    rows, batches, lines = asyncio.run(scenario())
    assert same_rows(rows, expected("hf", hf) + expected("bars/interval=60s", bars))
    assert same_rows(lines, expected("hf", hf) + expected("bars/interval=60s", bars))
    assert [(b.product, b.replay) for b in batches] == [("hf", False), ("bars/interval=60s", False)]
    assert all(isinstance(b, LiveBatch) for b in batches)
    for b, table in zip(batches, (hf, bars)):
        assert b.batch.schema.equals(table.schema)
        assert same_rows(b.batch.to_pylist(), table.to_pylist())


def test_a_publish_of_many_symbols_goes_out_as_one_batch_to_a_subscriber_of_them_all():
    # the ETL publishes a product's rows of every symbol in one table: a subscriber taking all of them
    # gets them in one batch, one taking some gets exactly its rows, and publishes never merge
    streams = [("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("okx", "BTC/USDT")]
    first = pa.concat_tables([rows_table(e, s, 1_733_000_000_000 + 10 * i, 2) for i, (e, s) in enumerate(streams)])
    second = pa.concat_tables([rows_table(e, s, 1_733_000_100_000 + 10 * i, 1) for i, (e, s) in enumerate(streams)])

    async def scenario():
        async with running_hub() as hub:
            every = asyncio.create_task(collect(2, socket=hub.socket_path, batches=True))
            eth = asyncio.create_task(collect(2, socket=hub.socket_path, batches=True, symbols=["ETH/USDT"]))
            btc = asyncio.create_task(collect(6, socket=hub.socket_path, symbols=["BTC/USDT"]))
            await wait_for(lambda: len(hub.subscribers) == 3, what="three subscribers")
            hub.publish("hf", first)
            hub.publish("hf", second)
            return [await asyncio.wait_for(t, 30) for t in (every, eth, btc)]

    every, eth, btc = asyncio.run(scenario())
    assert [b.batch.num_rows for b in every] == [6, 3]
    for b, table in zip(every, (first, second)):
        assert same_rows(b.batch.to_pylist(), table.to_pylist())
    assert [b.batch.num_rows for b in eth] == [2, 1]
    assert same_rows([r for b in eth for r in b.batch.to_pylist()],
                     [r for t in (first, second) for r in t.to_pylist() if r["symbol"] == "ETH/USDT"])
    assert same_rows(btc, [r for t in (first, second) for r in expected("hf", t) if r["symbol"] == "BTC/USDT"])


def test_filters_by_product_exchange_and_symbol():
    tables = [("hf", rows_table("binance", "BTC/USDT", 0, 3)), ("bars/interval=60s", rows_table("binance", "BTC/USDT", 10, 2)),
              ("bars/interval=5s", rows_table("okx", "BTC/USDT", 20, 2)), ("bars/interval=60s", rows_table("binance", "ETH/USDT", 30, 2)),
              ("trade_bars/interval=60s", rows_table("binance", "BTC/USDT", 40, 2))]

    async def scenario():
        async with running_hub() as hub:
            def seqs(**kw):
                async def run():
                    got = []
                    try:
                        async for row in subscribe(socket=hub.socket_path, **kw):
                            got.append((row["product"], row["exchange"], row["symbol"], row["seq"]))
                    except LiveClosed as e:  # the hub closed, and said so: these are all the rows it sent
                        assert "the ETL is stopping" in str(e)
                        return got
                    raise AssertionError("the iterator ended without LiveClosed")
                return asyncio.create_task(run())
            subs = {"bars": seqs(products="bars"), "btc-binance": seqs(symbols=["BTC-USDT"], exchanges="binance"),
                    "hf+eth": seqs(products=["hf"], symbols=["ETH/USDT", "BTC/USDT"]),
                    "exact": seqs(products="bars/interval=60s", symbols="ETH/USDT")}
            await wait_for(lambda: len(hub.subscribers) == len(subs), what="subscribers")
            for product, table in tables:
                hub.publish(product, table)
            await wait_for(lambda: hub.counters["published_rows"] == 11, what="publishes")
            await wait_for(lambda: all(s.queued_rows == 0 and not s.queue for s in hub.subscribers.values()),
                           what="queues drained")
        return {k: await asyncio.wait_for(t, 10) for k, t in subs.items()}

    got = asyncio.run(scenario())
    assert [s for *_, s in got["bars"]] == [10, 11, 20, 21, 30, 31]  # `bars` is not `trade_bars`
    assert [s for *_, s in got["btc-binance"]] == [0, 1, 2, 10, 11, 40, 41]
    assert [s for *_, s in got["hf+eth"]] == [0, 1, 2]
    assert got["exact"] == [("bars/interval=60s", "binance", "ETH/USDT", 30), ("bars/interval=60s", "binance", "ETH/USDT", 31)]


def test_replay_then_live_has_no_gap_and_no_duplicate():
    """A subscriber joining a busy stream with since=... gets every row once: ring, then live."""
    total = 3000

    async def scenario():
        async with running_hub(replay_rows=100_000, replay_minutes=24 * 60) as hub:
            async def publisher():
                for i in range(total):
                    hub.publish("hf", rows_table("binance", "BTC/USDT", 1_000 + i, 1))
                    await asyncio.sleep(0)
            pub = asyncio.create_task(publisher())
            await wait_for(lambda: hub.counters["published_rows"] >= total // 3, what="a third published")
            got = []
            async for row in subscribe(socket=hub.socket_path, since=0):
                got.append((row["seq"], row["replay"]))
                if row["seq"] == 1_000 + total - 1:
                    break
            await pub
            return got

    got = asyncio.run(scenario())
    seqs = [s for s, _ in got]
    assert seqs == list(range(1_000, 1_000 + total))
    flags = [r for _, r in got]
    first_live = flags.index(False)
    assert 0 < first_live < total and not any(flags[first_live:]) and all(flags[:first_live])


def test_last_minutes_replays_recent_rows_only():
    now_ms = int(time.time() * 1000)
    old = rows_table("binance", "BTC/USDT", now_ms - 10 * 60_000, 3)     # 10 minutes ago
    recent = rows_table("binance", "BTC/USDT", now_ms - 60_000, 3)       # one minute ago

    async def scenario():
        async with running_hub() as hub:
            hub.publish("hf", old)
            hub.publish("hf", recent)
            task = asyncio.create_task(collect(4, socket=hub.socket_path, last_minutes=5))
            await wait_for(lambda: len(hub.subscribers) == 1, what="subscriber")
            live = rows_table("binance", "BTC/USDT", now_ms, 1)
            hub.publish("hf", live)
            return await asyncio.wait_for(task, 30), live

    got, live = asyncio.run(scenario())
    assert same_rows(got, expected("hf", recent, replay=True) + expected("hf", live))


def test_a_replay_holds_the_newest_rows_of_every_symbol_that_fit_replay_mb():
    """`etl.live.replay_mb` bounds the hub's ring across symbols: a subscriber replaying everything
    gets each symbol's newest rows, the same stretch of time for both, then live."""
    n = 3000  # 2 x 3000 rows of 5 values: ~240 kB, over a 0.1 MB bound

    async def scenario():
        async with running_hub(replay_rows=100_000, replay_minutes=24 * 60, replay_mb=0.1) as hub:
            for i in range(n):
                for symbol in ("BTC/USDT", "ETH/USDT"):
                    hub.publish("hf", rows_table("binance", symbol, 1_000_000 + 1000 * i, 1))
            held = hub.ring.rows
            got = await asyncio.wait_for(collect(held, socket=hub.socket_path, since=0), 30)
            return got, held, hub.ring.bytes, hub.ring.max_bytes

    got, held, used, bound = asyncio.run(scenario())
    assert 0 < held < 2 * n and used <= bound
    times = {}
    for row in got:
        assert row["replay"]
        times.setdefault(row["symbol"], []).append(row["seq"])
    for symbol, seqs in times.items():  # each symbol's newest rows, in order, none missing
        assert seqs == list(range(seqs[0], 1_000_000 + 1000 * n, 1000)), symbol
    assert abs(times["BTC/USDT"][0] - times["ETH/USDT"][0]) <= 1000


def test_ring_is_bounded_by_rows_and_minutes():
    ring = RecentRows(minutes=1.0, max_rows=10)
    for i in range(8):  # chunk i: 3 rows, seq 3000i + 0..2, 1 s apart
        ring.add(Chunk(i, "hf", "x", "A/B", rows_table("x", "A/B", i * 3000, 3), False))
    assert ring.rows == 10  # the newest 10 rows: the last of chunk 4, then chunks 5..7
    assert [r["seq"] for c in ring.since(0, ring.keys()) for r in c.table.to_pylist()] == \
        [12002] + [3000 * i + k for i in (5, 6, 7) for k in range(3)]
    assert [r["seq"] for c in ring.since(18_000, ring.keys()) for r in c.table.to_pylist()] == \
        [18000, 18001, 18002, 21000, 21001, 21002]
    ring.add(Chunk(9, "hf", "x", "A/B", rows_table("x", "A/B", 200_000, 1), False))  # > 1 min newer
    assert [r["seq"] for c in ring.since(0, ring.keys()) for r in c.table.to_pylist()] == [200_000]


def _big_rows(start: int, n: int) -> pa.Table:
    t = rows_table("binance", "BTC/USDT", start, n)
    return t.append_column("pad", pa.array(["x" * 1000] * n))


def _stalled_reader(hub, request: bytes) -> socket.socket:
    """A subscriber with a tiny receive buffer that sends its request and then reads nothing."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(str(hub.socket_path))
    sock.sendall(request)
    return sock


async def _read_to_end(sock: socket.socket) -> bytes:
    """Everything the endpoint left on `sock` until it closed it; then closes ours."""
    sock.setblocking(False)
    data = b""
    while chunk := await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1 << 20), 30):
        data += chunk
    sock.close()
    return data


def test_stalled_subscriber_is_dropped_while_publish_and_a_healthy_subscriber_go_on(monkeypatch):
    import fluxforge.live.endpoint as endpoint

    monkeypatch.setattr(endpoint, "LAST_WORDS_GRACE", 60.0)  # let the stalled reader read its last line later
    chunks, per_chunk, buffer_rows = 3000, 10, 2000

    async def scenario():
        async with running_hub(buffer_rows=buffer_rows) as hub:
            stalled = _stalled_reader(hub, b'{"products": ["hf"]}\n')
            healthy = asyncio.create_task(collect(chunks * per_chunk, socket=hub.socket_path))
            await wait_for(lambda: len(hub.subscribers) == 2, what="both subscribers")
            most_queued = 0
            for i in range(chunks):
                hub.publish("hf", _big_rows(i * per_chunk, per_chunk))
                most_queued = max([most_queued] + [s.queued_rows for s in hub.subscribers.values()])
                await asyncio.sleep(0)
            rows = await asyncio.wait_for(healthy, 120)
            counters = json.loads(json.dumps(hub.counters))
            # the stalled reader, reading at last, finds whole frames and then the reason it was dropped
            data = await _read_to_end(stalled)
            return rows, counters, most_queued, data

    rows, counters, most_queued, data = asyncio.run(scenario())
    assert [r["seq"] for r in rows] == list(range(chunks * per_chunk))
    assert counters["dropped"] == {"slow": 1, "stalled": 0}
    assert counters["published_rows"] == chunks * per_chunk
    assert most_queued <= buffer_rows  # memory per subscriber stays bounded
    frames = [json.loads(line) for line in data.splitlines()]
    assert [f["type"] for f in frames[:2]] == ["subscribed", "schema"] and frames[2]["seq"] == 0
    assert all(f["type"] == "row" for f in frames[2:-1])
    last = frames[-1]
    assert last["type"] == "dropped" and last["reason"] == "slow"


def test_a_subscriber_behind_by_more_memory_than_buffer_mb_is_dropped(monkeypatch):
    """Rows alone do not bound memory: a chunk of one 170-column row holds ~80 kB of Arrow objects, so
    20,000 queued rows of them were 1.6 GB.  A reader that stops is dropped at buffer_mb, told why."""
    import fluxforge.live.endpoint as endpoint

    monkeypatch.setattr(endpoint, "LAST_WORDS_GRACE", 60.0)
    wide = rows_table("binance", "BTC/USDT", 0, 1)
    for i in range(170):
        wide = wide.append_column(f"f{i}", pa.array([float(i)]))

    async def scenario():
        async with running_hub(buffer_mb=2) as hub:
            stalled = _stalled_reader(hub, b'{"products": ["hf"]}\n')
            await wait_for(lambda: len(hub.subscribers) == 1, what="subscriber")
            sub = next(iter(hub.subscribers.values()))
            most = 0
            for i in range(2000):  # 2,000 rows: a tenth of buffer_rows
                hub.publish("hf", wide.set_column(3, "seq", pa.array([i], pa.int64())))
                most = max(most, sub.queued_bytes)
                await asyncio.sleep(0)
            counters = json.loads(json.dumps(hub.counters))
            data = await _read_to_end(stalled)
            return counters, most, data

    counters, most, data = asyncio.run(scenario())
    assert counters["dropped"] == {"slow": 1, "stalled": 0}
    assert 1.5 * 2 ** 20 < most <= 2 * 2 ** 20
    last = json.loads(data.splitlines()[-1])
    assert last["type"] == "dropped" and last["reason"] == "slow" and "etl.live.buffer_mb" in last["detail"], last


def test_subscriber_that_stops_reading_a_quiet_stream_is_dropped_as_stalled():
    async def scenario():
        async with running_hub(buffer_rows=10_000_000, send_timeout=1.0) as hub:
            stalled = _stalled_reader(hub, b"{}\n")
            await wait_for(lambda: len(hub.subscribers) == 1, what="subscriber")
            for i in range(50):  # ~5 MB: more than the socket buffers hold, then nothing more
                hub.publish("hf", _big_rows(i * 100, 100))
                await asyncio.sleep(0)
            await wait_for(lambda: hub.counters["dropped"]["stalled"] == 1, what="the stalled drop")
            stalled.close()
            return dict(hub.counters["dropped"]), len(hub.subscribers)

    dropped, left = asyncio.run(scenario())
    assert dropped == {"slow": 0, "stalled": 1} and left == 0


def test_a_wide_bind_needs_a_token(tmp_path):
    with pytest.raises(ConfigError, match=r"etl\.live.*not a loopback address.*etl\.live\.token"):
        parse_config({"etl": {"live": {"listen": "0.0.0.0", "port": 9466}}})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"etl": {"live": {"listen": "0.0.0.0", "port": 9466}}}))
    check = subprocess.run([sys.executable, "-m", "fluxforge.cli", "config", "check", "--config", str(path)],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 78 and "etl.live.token" in check.stderr, check.stderr
    cfg = parse_config({"etl": {"live": {"listen": "0.0.0.0", "port": 9466, "token": "0123456789abcdef0123"}}})
    assert masked_dump(cfg)["etl"]["live"]["token"] == "***"
    assert parse_config({"etl": {"live": {"port": 9466}}}).etl.live.listen == "127.0.0.1"  # loopback: no token


def test_websocket_refuses_a_missing_or_wrong_token():
    token = "0123456789abcdef-live"
    table = rows_table("binance", "BTC/USDT", 0, 3)

    async def scenario():
        async with running_hub(port=0, token=token) as hub:
            url = f"ws://127.0.0.1:{hub.endpoints.ws_port}/live"
            refusals = []
            for bad in (None, "wrong-token-0123456789"):
                with pytest.raises(LiveError, match="unauthorized") as e:
                    await asyncio.wait_for(collect(1, url=url, token=bad), 30)
                refusals.append(str(e.value))
            good = asyncio.create_task(collect(3, url=url, token=token))
            await wait_for(lambda: len(hub.subscribers) == 1, what="the authorized subscriber")
            hub.publish("hf", table)
            return await asyncio.wait_for(good, 30), hub.counters["refused"]

    rows, refused = asyncio.run(scenario())
    assert refused == 2
    assert same_rows(rows, expected("hf", table))


def test_fluxforge_live_prints_json_lines(tmp_path):
    table = rows_table("binance", "BTC/USDT", 1_733_000_000_000, 5)

    async def scenario():
        async with running_hub() as hub:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "fluxforge.cli", "live", "--socket", str(hub.socket_path),
                "--product", "hf", "--count", "5", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            await wait_for(lambda: len(hub.subscribers) == 1, timeout=120, what="`fluxforge live` to subscribe")
            hub.publish("bars/interval=60s", rows_table("binance", "BTC/USDT", 0, 2))  # filtered out
            hub.publish("hf", table)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode, out.decode(), err.decode()

    rc, out, err = asyncio.run(scenario())
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["seq"] for r in lines] == [1_733_000_000_000 + i for i in range(5)]
    assert all(r["type"] == "row" and r["product"] == "hf" and r["replay"] is False for r in lines)
    assert [r["timestamp"] for r in lines] == [1_733_000_000_000 + i * 1000 for i in range(5)]  # ms since the epoch
    assert [r["value"] for r in lines] == ["NaN", 1.0, 2.0, "NaN", 4.0]   # NaN as in the protobuf JSON mapping
    assert [r["maybe"] for r in lines] == [None, 1, 2, 3, None]


def test_fluxforge_live_on_a_terminal_prints_an_aligned_table(tmp_path):
    """stdout a terminal (a real pty): one line per row -- UTC time, R for a replay, product,
    exchange:symbol, a few values -- the values in one column whatever the product's length."""
    import pty

    long_rows = rows_table("kraken", "DOGE/USDT", 1_733_000_000_000, 2)
    short_rows = rows_table("binance", "BTC/USDT", 1_733_000_002_000, 2)

    async def scenario():
        async with running_hub() as hub:
            master, slave = pty.openpty()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "fluxforge.cli", "live", "--socket", str(hub.socket_path), "--count", "4",
                stdout=slave, stderr=subprocess.PIPE)
            os.close(slave)
            await wait_for(lambda: len(hub.subscribers) == 1, timeout=120, what="`fluxforge live` to subscribe")
            hub.publish("trade_bars/interval=3600s", long_rows)
            hub.publish("hf", short_rows, replay=True)
            out = await asyncio.get_running_loop().run_in_executor(None, _read_until_closed, master)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode, out.decode(), err.decode()

    rc, out, err = asyncio.run(scenario())
    assert rc == 0, err
    lines = out.replace("\r\n", "\n").splitlines()
    assert lines == [
        "20:53:20.000   trade_bars/interval=3600s kraken:DOGE/USDT seq=1733000000000 value=NaN maybe=None",
        "20:53:21.000   trade_bars/interval=3600s kraken:DOGE/USDT seq=1733000000001 value=1 maybe=1",
        "20:53:22.000 R hf                        binance:BTC/USDT seq=1733000002000 value=NaN maybe=None",
        "20:53:23.000 R hf                        binance:BTC/USDT seq=1733000002001 value=1 maybe=1",
    ], out


def _read_until_closed(fd: int) -> bytes:
    """All a pty's master side reads until the other side is closed (EIO on Linux)."""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        pass
    finally:
        os.close(fd)
    return b"".join(chunks)


def test_dropped_subscriber_iterator_raises_with_the_reason():
    async def scenario():
        async with running_hub(buffer_rows=10) as hub:
            reader = asyncio.create_task(collect(10_000, socket=hub.socket_path))
            await wait_for(lambda: len(hub.subscribers) == 1, what="subscriber")
            hub.publish("hf", rows_table("binance", "BTC/USDT", 0, 20))  # more than its buffer at once
            with pytest.raises(LiveDropped) as e:
                await asyncio.wait_for(reader, 30)
            return e.value.reason, hub.counters["dropped"]["slow"]

    assert asyncio.run(scenario()) == ("slow", 1)


def test_etl_service_runs_the_hub_with_its_lifecycle(tmp_path):
    """EtlService.hub: bound when the service runs, served to subscribers, counted in /metrics, gone at stop."""
    import tempfile

    from prometheus_client import generate_latest

    from fluxforge.config import Config
    from fluxforge.etl.service import EtlService

    with tempfile.TemporaryDirectory(prefix="fflive-") as short:
        sock = f"{short}/live.sock"
        cfg = Config.model_validate({"data_dir": str(tmp_path / "data"), "host_id": "t",
                                     "etl": {"poll_interval": 0.2, "live": {"enabled": True, "socket": sock}},
                                     "metrics": {"etl_port": 0}})
        assert EtlService(cfg, once=True).hub is None  # a --once run serves nobody
        table = rows_table("binance", "BTC/USDT", 0, 3)

        async def scenario():
            svc = EtlService(cfg)
            task = asyncio.create_task(svc.run())
            await wait_for(lambda: os.path.exists(sock), what="the live socket")
            # what this ETL does not serve is refused by name: no exchange configured here
            with pytest.raises(LiveError, match=r"products: 'bar' not made by this ETL; it makes bars/interval="):
                await collect(1, socket=sock, products="bar")
            with pytest.raises(LiveError, match=r"symbols: 'BTC-USDT' not collected here"):
                await collect(1, socket=sock, symbols="BTC/USDT")
            rows = asyncio.create_task(collect(3, socket=sock))
            await wait_for(lambda: len(svc.hub.subscribers) == 1, what="subscriber")
            status = svc.status_line()
            svc.hub.publish("hf", table)
            got = await asyncio.wait_for(rows, 30)
            # ... until the hub holds rows of it
            held = await asyncio.wait_for(collect(3, socket=sock, symbols="BTC/USDT", since=0), 30)
            assert same_rows(held, expected("hf", table, replay=True))
            metrics = generate_latest(svc.metrics.registry).decode()
            svc.request_stop()
            assert await asyncio.wait_for(task, 60) == 0
            return got, status, metrics

        got, status, metrics = asyncio.run(scenario())
        assert same_rows(got, expected("hf", table))
        live = next(p for p in status.split("; ") if p.startswith("live "))  # latency, then subscribers
        assert live.endswith(", 1 sub"), status
        assert "fluxforge_live_rows_published_total 3.0" in metrics
        assert "fluxforge_live_subscriptions_refused_total 2.0" in metrics
        assert 'fluxforge_live_subscribers_dropped_total{reason="slow"} 0.0' in metrics
        assert not os.path.exists(sock)  # removed at stop
