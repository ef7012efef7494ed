"""Each loopback fault, as unmodified ccxt.pro binance experiences it, and its recovery."""
from __future__ import annotations

import asyncio

import ccxt
import pytest

from fluxforge.loopback import FaultSpec, LoopbackExchange, SimOptions
from loopback_support import ccxt_client, run, watch_until

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
BTC = "BTC/USDT"


def sim(**kw) -> LoopbackExchange:
    return LoopbackExchange("sim", SYMBOLS, sim=SimOptions(rate=kw.pop("rate", 20), seed=7), **kw)


async def assert_same_book_as_server(lx, ex, symbol=BTC):
    """Freeze the market, let the client drain, compare its whole book with the server's."""
    lx.freeze()
    book = lx.source.books[symbol]
    ob = await watch_until(lambda: ex.watch_order_book(symbol), lambda o: o["nonce"] == book.last_update_id) \
        if ex.orderbooks.get(symbol, {}).get("nonce") != book.last_update_id else ex.orderbooks[symbol]
    last_id, bids, asks = book.snapshot()
    assert ob["nonce"] == last_id
    assert [list(x) for x in ob["bids"]] == [[float(p), float(q)] for p, q in bids]
    assert [list(x) for x in ob["asks"]] == [[float(p), float(q)] for p, q in asks]
    lx.freeze(False)


async def delivered(lx, ex, symbol=BTC, timeout=10.0, last_id=None) -> None:
    """Wait until the client holds the last book update the server sent (or `last_id`): frames already
    in flight when a stall starts still arrive, only after this does silence mean the stall."""
    stream = lx.sent.stream("binance", symbol, "orderbook")
    deadline = asyncio.get_running_loop().time() + timeout
    while ex.orderbooks.get(symbol, {}).get("nonce") != (stream.last_id if last_id is None else last_id):
        assert asyncio.get_running_loop().time() < deadline, "sent book updates never reached the client"
        await asyncio.sleep(0.01)


def _last_book_ahead(lx, symbol: str) -> int:
    """The id of the last book frame of `symbol` written, or queued to be written, to the client: what
    it still receives ahead of a frame enqueued now (the sent-log records frames as they are written)."""
    queued = [item[3] for conn in lx.hub.connections for item in list(conn.queue._queue)
              if item[1] == symbol and item[2] == "orderbook" and item[3] is not None]
    return max([lx.sent.stream("binance", symbol, "orderbook").last_id, *queued])


async def no_update_within(ex, seconds, symbol=BTC) -> bool:
    try:
        await asyncio.wait_for(ex.watch_order_book(symbol), seconds)
    except asyncio.TimeoutError:
        return True
    return False


def test_gap_raises_checksum_error_then_resubscribe_and_new_snapshot_recover():
    async def body():
        async with sim() as lx:
            async with ccxt_client(lx) as ex:
                for _ in range(3):
                    await ex.watch_order_book(BTC)
                subscribes, snapshots = lx.sent.subscribes, lx.sent.snapshots
                lx.faults.gap(BTC)
                # ccxt's binance spot handler reports a U != nonce + 1 gap as ChecksumError
                with pytest.raises(ccxt.ChecksumError):
                    await watch_until(lambda: ex.watch_order_book(BTC), lambda ob: False, 100)
                dropped = lx.sent.stream("binance", BTC, "orderbook").dropped
                assert len(dropped) == 1
                ob = await ex.watch_order_book(BTC)  # resubscribes on the same socket, new snapshot
                assert ob["nonce"] > dropped[0][1]
                assert lx.sent.subscribes == subscribes + 1 and lx.sent.snapshots == snapshots + 1
                sent_ids = lx.sent.stream("binance", BTC, "orderbook").ids
                assert dropped[0][1] not in sent_ids
                await assert_same_book_as_server(lx, ex)

    run(body())


@pytest.mark.parametrize("abrupt", [False, True])
def test_disconnect_raises_network_error_then_reconnect_recovers(abrupt):
    async def body():
        async with sim() as lx:
            async with ccxt_client(lx) as ex:
                await ex.watch_order_book(BTC)
                opened = lx.sent.connections_opened
                assert await lx.faults.disconnect(abrupt=abrupt) == 1
                with pytest.raises(ccxt.NetworkError) as err:
                    await watch_until(lambda: ex.watch_order_book(BTC), lambda ob: False, 100)
                assert type(err.value) is ccxt.NetworkError  # not its InvalidNonce/ChecksumError subclasses
                assert f"closing code {1006 if abrupt else 1001}" in str(err.value)
                await ex.watch_order_book(BTC)
                assert lx.sent.connections_opened == opened + 1
                await assert_same_book_as_server(lx, ex)

    run(body())


def test_stall_keeps_the_socket_open_but_silent_then_data_resumes_with_a_gap():
    async def body():
        async with sim() as lx:
            async with ccxt_client(lx) as ex:
                await ex.watch_order_book(BTC)
                assert lx.faults.stall(2.0) == 1
                await delivered(lx, ex)
                before = lx.sent.stream("binance", BTC, "orderbook").messages
                assert await no_update_within(ex, 1.0)
                assert lx.sent.connections_open == 1  # still connected
                assert lx.sent.stream("binance", BTC, "orderbook").messages == before
                # the market moved on while the socket was silent: ccxt sees a gap, then recovers
                with pytest.raises(ccxt.ChecksumError):
                    await watch_until(lambda: ex.watch_order_book(BTC), lambda ob: False, 100)
                await ex.watch_order_book(BTC)
                await assert_same_book_as_server(lx, ex)

    run(body())


def test_endless_stall_is_escaped_by_reconnecting():
    async def body():
        async with sim() as lx:
            async with ccxt_client(lx) as ex:
                await ex.watch_order_book(BTC)
                lx.faults.stall()  # until resume(): only a new connection gets data
                await delivered(lx, ex)
                assert await no_update_within(ex, 1.0)
                await ex.close()
                await ex.watch_order_book(BTC)
                assert lx.sent.connections_opened == 2
                await assert_same_book_as_server(lx, ex)

    run(body())


def test_malformed_json_wedges_ccxt_until_the_client_reconnects():
    async def body():
        async with sim() as lx:
            async with ccxt_client(lx) as ex:
                await ex.watch_order_book(BTC)
                before = _last_book_ahead(lx, BTC)  # written or queued ahead of the bad frame
                assert lx.faults.malformed(BTC) == 1
                await delivered(lx, ex, last_id=before)  # (in flight under load: not "no longer wedged")
                # ccxt.pro's receive loop dies on undecodable JSON without telling the watchers:
                # the stream goes silent, which is what the collector's stall_timeout must catch.
                assert await no_update_within(ex, 2.0), "ccxt no longer wedges on malformed JSON"
                with pytest.raises(asyncio.TimeoutError):  # an unsubscribe is never acked either
                    await asyncio.wait_for(ex.un_watch_order_book(BTC), 1.0)
                assert lx.sent.malformed_sent == 1
                await ex.close()  # what recovers: close the client, then watch again
                await ex.watch_order_book(BTC)
                await assert_same_book_as_server(lx, ex)

    run(body())


def test_crossed_book_reaches_ccxt_and_is_removed_by_the_next_diff():
    async def body():
        async with sim() as lx:
            async with ccxt_client(lx) as ex:
                await ex.watch_order_book(BTC)
                lx.faults.crossed(BTC)
                crossed = await watch_until(lambda: ex.watch_order_book(BTC),
                                            lambda ob: ob["bids"][0][0] > ob["asks"][0][0], 50)
                fault = next(f for f in lx.sent.faults if f["kind"] == "crossed")
                assert crossed["nonce"] == fault["last_id"] and crossed["bids"][0][0] == float(fault["bid"])
                healed = await ex.watch_order_book(BTC)
                assert healed["bids"][0][0] < healed["asks"][0][0]
                await assert_same_book_as_server(lx, ex)

    run(body())


def test_slow_exchange_delays_rest_and_frames_without_losing_any():
    async def body():
        async with sim(rate=10) as lx:
            async with ccxt_client(lx) as ex:
                await ex.watch_order_book(BTC)
                loop = asyncio.get_running_loop()
                lx.faults.slow(0.4, seconds=1.5)
                started = loop.time()
                await ex.fetch_order_book(BTC)
                assert loop.time() - started >= 0.4
                nonces = [(await ex.watch_order_book(BTC))["nonce"] for _ in range(5)]
                assert nonces == sorted(nonces)
                await assert_same_book_as_server(lx, ex)
                assert not lx.sent.stream("binance", BTC, "orderbook").dropped

    run(body())


def test_scheduled_faults_from_the_constructor_fire_on_their_own():
    async def body():
        async with sim(faults=["gap@0.5:symbol=BTC/USDT", "disconnect@1.5/1"]) as lx:
            async with ccxt_client(lx) as ex:
                errors = set()
                for _ in range(500):
                    try:
                        await ex.watch_order_book(BTC)
                    except (ccxt.ChecksumError, ccxt.NetworkError) as e:
                        errors.add(type(e))
                    if len(errors) == 2:
                        break
                assert errors == {ccxt.ChecksumError, ccxt.NetworkError}
                kinds = [f["kind"] for f in lx.sent.faults]
                assert kinds[0] == "gap_armed" and kinds.count("gap") == 1 and "disconnect" in kinds

    run(body(), timeout=90)


def test_fault_spec_parsing():
    spec = FaultSpec.parse("stall@10/30:seconds=3,protocol=binance")
    assert (spec.kind, spec.at, spec.every, spec.params) == ("stall", 10.0, 30.0, {"seconds": 3, "protocol": "binance"})
    assert FaultSpec.parse("gap").at == 0.0
    for bad in ("nosuch@1", "gap@soon", "gap@1:symbol"):
        with pytest.raises(ValueError):
            FaultSpec.parse(bad)
