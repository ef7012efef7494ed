"""The `ohlcv` and `bidsasks` channels end to end: the loopback exchange (Binance protocol,
`<sym>@kline_<tf>` and `<sym>@bookTicker`) and `fluxforge collect` as its own process, with
unmodified ccxt.

Every candle update and every best bid/ask the loopback sent is a bronze row, in order, with
the values sent (the sent-log keeps them): nothing coalesced, nothing invented, and bid/ask
quotes never land in the ticker channel (nor tickers in bidsasks).  A channel the exchange's
ccxt.pro class cannot serve is refused at start-up with exit 78 and the field named.
"""
from __future__ import annotations

import asyncio
import subprocess

import pytest

from collector_support import (collector_command, drained, exchange_entry, logged_errors, make_config, ready_tables,
                               rows_of, running_collector, subprocess_env, wait_until, write_config)
from test_collector_e2e import binance_entry

from fluxforge.loopback import LoopbackExchange, SimOptions

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
TIMEFRAMES = ["1s", "1m"]


def _floats(values):
    return tuple(float(v) for v in values)


def assert_candles_match(tables, sent, symbol: str) -> int:
    rows = rows_of(tables["ohlcv"], exchange="binance", symbol=symbol)
    stored = [(r["timeframe"], r["timestamp"], r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in rows]
    expected = [(tf, t, *_floats(v)) for tf, t, *v in sent.stream("binance", symbol, "ohlcv").values]
    assert stored == expected, f"{symbol}: candle updates differ from what was sent"
    assert [r["recv_ns"] for r in rows] == sorted(r["recv_ns"] for r in rows)
    return len(rows)


def assert_quotes_match(tables, sent, symbol: str) -> int:
    rows = rows_of(tables["bidsasks"], exchange="binance", symbol=symbol)
    stored = [(r["bid"], r["bid_size"], r["ask"], r["ask_size"]) for r in rows]
    expected = [_floats(v) for v in sent.stream("binance", symbol, "bidsasks").values]
    assert stored == expected, f"{symbol}: best bid/ask updates differ from what was sent"
    assert all(r["timestamp"] is None for r in rows)  # Binance spot bookTicker carries no time
    return len(rows)


def test_candles_and_quotes_reach_bronze_as_sent(tmp_path):
    data, log_path = tmp_path / "data", tmp_path / "collector.log"

    async def body():
        sim = SimOptions(rate=20, trades_per_update=1.0, ticker_interval=0.25, seed=18)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            entry = binance_entry(lx, SYMBOLS, channels=["ticker", "ohlcv", "bidsasks"], ohlcv_timeframes=TIMEFRAMES)
            cfg = write_config(tmp_path / "config.yaml", data, [entry], segment_max_seconds=1.0)

            def sent(channel: str) -> int:
                return min(lx.sent.stream("binance", s, channel).messages for s in SYMBOLS)

            with open(log_path, "ab") as log:
                proc = await asyncio.create_subprocess_exec(*collector_command(cfg), env=subprocess_env(),
                                                            stdout=subprocess.DEVNULL, stderr=log)
                try:
                    # candles of both timeframes, a few seconds of them (so a 1s candle closed)
                    await wait_until(lambda: sent("ohlcv") >= 40 and sent("bidsasks") >= 40 and sent("ticker") >= 5
                                     or proc.returncode is not None, 90, what="candles and quotes sent")
                    assert proc.returncode is None, log_path.read_text()[-3000:]
                    lx.freeze()
                    await drained(lx, lambda: logged_errors(log_path))
                finally:
                    if proc.returncode is None:
                        proc.terminate()
                    rc = await asyncio.wait_for(proc.wait(), 60)
            assert rc == 0, log_path.read_text()[-3000:]
            tables = ready_tables(data)
            for symbol in SYMBOLS:
                assert assert_candles_match(tables, lx.sent, symbol) >= 40
                assert assert_quotes_match(tables, lx.sent, symbol) >= 40
                stored_tf = {r["timeframe"] for r in rows_of(tables["ohlcv"], symbol=symbol)}
                assert stored_tf == set(TIMEFRAMES)
                # the open candle was re-sent and every update kept: more rows than candles
                candles = {(r["timeframe"], r["timestamp"]) for r in rows_of(tables["ohlcv"], symbol=symbol)}
                assert len(candles) < len(rows_of(tables["ohlcv"], symbol=symbol))
                assert len(rows_of(tables["ticker"], symbol=symbol)) == lx.sent.stream("binance", symbol,
                                                                                         "ticker").messages
            assert not rows_of(tables["events"], event="dropped") and not rows_of(tables["events"], event="gap")

    asyncio.run(asyncio.wait_for(body(), 180))


def test_unsupported_channel_is_refused_at_start(tmp_path):
    """Coinbase's ccxt.pro class has no watchBidsAsks; Binance lists no 7m timeframe."""
    async def body():
        async with LoopbackExchange("sim", SYMBOLS) as lx:
            cases = [(exchange_entry(lx, "coinbase", SYMBOLS, channels=["trades", "bidsasks"]),
                      "exchanges.0.channels: 'bidsasks' cannot be collected from coinbase"),
                     (exchange_entry(lx, "binance", SYMBOLS, channels=["ohlcv"], ohlcv_timeframes=["1m", "7m"]),
                      "exchanges.0.ohlcv_timeframes: 'ohlcv' cannot be collected from binance: ccxt.pro "
                      "'binance' has no timeframe '7m'")]
            for entry, message in cases:
                cfg = write_config(tmp_path / "config.yaml", tmp_path / "data", [entry])
                proc = await asyncio.create_subprocess_exec(*collector_command(cfg), env=subprocess_env(),
                                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                out, _ = await asyncio.wait_for(proc.communicate(), 60)
                assert proc.returncode == 78, out.decode()[-2000:]
                assert message in out.decode(), out.decode()[-2000:]
            assert not (tmp_path / "data" / "segments").exists() or not any((tmp_path / "data" / "segments").rglob("*.parquet"))

    asyncio.run(asyncio.wait_for(body(), 120))


def test_okx_ticker_rows_are_whole_tickers(tmp_path):
    """OKX's tickers frame makes ccxt resolve a bid/ask-only object (its `bidsasks` entry) before the
    full ticker: the ticker row must be the full ticker (it used to be the bid/ask object)."""
    async def body():
        async with LoopbackExchange("sim", SYMBOLS[:1], sim=SimOptions(rate=10, ticker_interval=0.3, seed=3)) as lx:
            cfg = make_config(tmp_path, [exchange_entry(lx, "okx", SYMBOLS[:1], channels=["ticker"])])
            async with running_collector(cfg) as collector:
                await wait_until(lambda: lx.sent.stream("okx", SYMBOLS[0], "ticker").messages >= 5, 60,
                                 what="okx tickers sent")
                lx.freeze()
                await drained(lx, collector)
        tables = ready_tables(tmp_path)
        tickers = rows_of(tables["ticker"], exchange="okx")
        assert len(tickers) == lx.sent.stream("okx", SYMBOLS[0], "ticker").messages >= 5
        for t in tickers:
            assert None not in (t["bid"], t["ask"], t["last"], t["open"], t["high"], t["low"], t["base_volume"]), t
        assert tables["bidsasks"].num_rows == 0

    asyncio.run(asyncio.wait_for(body(), 120))


def test_unsupported_channel_outside_collect_is_an_event_not_a_stop(tmp_path):
    """A collector started without `fluxforge collect`'s check (demo, tests) records one `error`
    event for the channel it cannot serve and collects the others."""
    async def body():
        async with LoopbackExchange("sim", SYMBOLS[:1], sim=SimOptions(rate=20, trades_per_update=1.0, seed=4)) as lx:
            cfg = make_config(tmp_path, [exchange_entry(lx, "coinbase", SYMBOLS[:1], channels=["trades", "bidsasks"])])
            async with running_collector(cfg) as collector:
                await wait_until(lambda: collector.recorder.last_seen.get(("coinbase", "trades", SYMBOLS[0])), 60,
                                 what="coinbase trades recorded")
        tables = ready_tables(tmp_path)
        refused = [e for e in rows_of(tables["events"], event="error") if e["channel"] == "bidsasks"]
        assert len(refused) == 1 and "has no watchBidsAsks" in refused[0]["reason"], refused
        assert rows_of(tables["trades"], exchange="coinbase") and tables["bidsasks"].num_rows == 0

    asyncio.run(asyncio.wait_for(body(), 120))


@pytest.mark.parametrize("aliased", [True, False], ids=["aliased", "not-aliased"])
def test_candles_and_quotes_reported_under_an_alias_are_recorded_or_counted(tmp_path, aliased):
    """The exchange reports BTC/USDC's candles and best bid/ask as BTC/USD: with `aliases` every one is a
    row of BTC/USDC, as sent; without, every one is counted as unrequested, none recorded, none lost."""
    symbols = ["BTC/USDC", "ETH/USDT"]

    async def body():
        sim = SimOptions(rate=20, trades_per_update=1.0, ticker_interval=0.25, seed=19)
        async with LoopbackExchange("sim", symbols, sim=sim, report_as={"BTC/USDC": "BTC/USD"}) as lx:
            extra = {"aliases": {"BTC/USD": "BTC/USDC"}} if aliased else {}
            entry = binance_entry(lx, symbols, channels=["ohlcv", "bidsasks"], ohlcv_timeframes=["1s"], **extra)
            cfg = make_config(tmp_path, [entry])
            sent = lambda s, ch: lx.sent.stream("binance", s, ch).messages  # noqa: E731
            async with running_collector(cfg) as collector:
                await wait_until(lambda: all(sent(s, ch) >= 20 for s in symbols for ch in ("ohlcv", "bidsasks")),
                                 60, what="candles and quotes of both symbols sent")
                lx.freeze()
                await drained(lx, collector)
                unrequested = collector.recorder.unrequested_rows
            tables = ready_tables(tmp_path)
            assert assert_candles_match(tables, lx.sent, "ETH/USDT") >= 20
            assert assert_quotes_match(tables, lx.sent, "ETH/USDT") >= 20
            assert not any(r["symbol"] == "BTC/USD" for ch in ("ohlcv", "bidsasks") for r in tables[ch].to_pylist())
            events = rows_of(tables["events"], event="unrequested")
            if aliased:
                assert assert_candles_match(tables, lx.sent, "BTC/USDC") >= 20
                assert assert_quotes_match(tables, lx.sent, "BTC/USDC") >= 20
                assert unrequested == 0 and not events
                return
            assert not rows_of(tables["ohlcv"], symbol="BTC/USDC") and not rows_of(tables["bidsasks"], symbol="BTC/USDC")
            assert unrequested == sent("BTC/USDC", "ohlcv") + sent("BTC/USDC", "bidsasks")  # every one counted
            assert {(e["symbol"], e["channel"]) for e in events} == {("BTC/USD", "ohlcv"), ("BTC/USD", "bidsasks")}

    asyncio.run(asyncio.wait_for(body(), 120))
