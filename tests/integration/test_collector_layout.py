"""An exchange entry's layout, end to end with the loopback exchange and unmodified ccxt.pro.

* per-channel symbol lists: the collector subscribes exactly the configured (channel, symbol)
  pairs, bronze holds rows for exactly those, and the ETL makes book features where there are
  books and trade products for every symbol with trades;
* aliases: Coinbase reports a USDC product's trades and tickers under the USD product; with
  `aliases: {BTC/USD: BTC/USDC}` every sent row lands under BTC/USDC, without it every such
  row is counted as `unrequested` (STATUS=, an event, `fluxforge status`), none vanishes;
* isolate_books: a product whose book subscribe the exchange refuses stops only its own book
  when books are watched one per symbol; a grouped watch loses every book (why Coinbase's
  default is isolated); the refused one is retried with back-off and flows once it is served.
"""
from __future__ import annotations

import asyncio

import pytest
from collector_support import (drained, exchange_entry, make_config, ready_segments, ready_tables, rows_of,
                               running_collector, wait_until)

from fluxforge.collector.health import status_line
from fluxforge.etl.replay import replay
from fluxforge.loopback import LoopbackExchange, SimOptions
from fluxforge.observe.status import collect
from fluxforge.observe.status_checks import check

SYMBOLS = ["BTC/USDT", "ETH/USDT", "XRP/USDT"]
DEPTH = 10


def stored_pairs(tables) -> set[tuple[str, str]]:
    return {(ch, r["symbol"]) for ch in ("orderbook", "trades", "ticker") for r in tables[ch].to_pylist()}


def test_per_channel_symbol_lists_watch_exactly_those_pairs(tmp_path):
    layout = {"orderbook": ["BTC/USDT"], "trades": SYMBOLS, "ticker": ["ETH/USDT", "XRP/USDT"]}
    pairs = {(ch, s) for ch, symbols in layout.items() for s in symbols}

    async def body():
        sim = SimOptions(rate=25, trades_per_update=0.7, ticker_interval=0.3, seed=41)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            entry = {"name": "binance", "ccxt": lx.ccxt_config("binance"), "channels": layout}
            cfg = make_config(tmp_path, [entry])
            assert cfg.exchanges[0].symbols == SYMBOLS
            async with running_collector(cfg) as collector:
                rec = collector.recorder
                await wait_until(lambda: all(("binance", ch, s) in rec.last_seen for ch, s in pairs)
                                 and all(len(lx.sent.stream("binance", s, "trades").ids) >= 40 for s in SYMBOLS),
                                 60, what="every configured pair, and 40 trades of each symbol sent")
                subscribed = {(ch, s) for (s, ch), conns in lx.hub.subscribers.items() if conns}
                assert subscribed == pairs
                lx.freeze()
                await drained(lx, collector)
                assert rec.unrequested_rows == 0
            tables = ready_tables(tmp_path)
            assert stored_pairs(tables) == pairs
            for ch, symbol in pairs - {("orderbook", "BTC/USDT")}:
                kind = "trades" if ch == "trades" else "ticker"
                stored = len(rows_of(tables[ch], symbol=symbol))
                assert stored == (len(lx.sent.stream("binance", symbol, kind).ids) if kind == "trades"
                                  else lx.sent.stream("binance", symbol, kind).messages), (ch, symbol)
            # the ETL takes symbols that have trades and tickers but no book
            out = tmp_path / "features"
            summary = replay(ready_segments(tmp_path), out, cfg.etl.features, cfg.etl.row_group_rows,
                             reorder_window=0.0, trade_options=cfg.etl.trades)
            assert not summary.skipped and summary.done
            symbols_in = lambda tree: {p.name.split("=", 1)[1] for p in (out / tree).rglob("symbol=*")}  # noqa: E731
            assert symbols_in("hf") == {"BTC-USDT"}  # book features where there are books
            assert symbols_in("trade_bars") == {"BTC-USDT", "ETH-USDT", "XRP-USDT"}


    asyncio.run(asyncio.wait_for(body(), 90))


@pytest.mark.parametrize("aliased", [True, False], ids=["aliased", "not-aliased"])
def test_coinbase_usd_rows_of_a_usdc_symbol_are_recorded_or_counted(tmp_path, aliased):
    symbols = ["BTC/USDC", "ETH/USDT"]

    async def body():
        sim = SimOptions(rate=25, trades_per_update=0.8, ticker_interval=0.3, seed=42)
        async with LoopbackExchange("sim", symbols, sim=sim, report_as={"BTC/USDC": "BTC/USD"}) as lx:
            extra = {"aliases": {"BTC/USD": "BTC/USDC"}} if aliased else {}
            cfg = make_config(tmp_path, [exchange_entry(lx, "coinbase", symbols, book_depth=DEPTH, **extra)])
            async with running_collector(cfg) as collector:
                rec = collector.recorder
                await wait_until(lambda: all(("coinbase", ch, "ETH/USDT") in rec.last_seen
                                             for ch in ("orderbook", "trades", "ticker"))
                                 and ("coinbase", "orderbook", "BTC/USDC") in rec.last_seen
                                 and len(lx.sent.stream("coinbase", "BTC/USDC", "trades").ids) >= 10
                                 and lx.sent.stream("coinbase", "BTC/USDC", "ticker").messages >= 3,
                                 30, what="books of both, trades and tickers of BTC/USDC sent")
                lx.freeze()
                await drained(lx, collector)
                status = status_line(collector, 0.0)
                unrequested = rec.unrequested_rows
                metrics = collector.metrics
            tables = ready_tables(tmp_path)
            sent_trades = lx.sent.stream("coinbase", "BTC/USDC", "trades").ids
            sent_tickers = lx.sent.stream("coinbase", "BTC/USDC", "ticker").messages
            stored_trades = [int(r["trade_id"]) for r in rows_of(tables["trades"], symbol="BTC/USDC")]
            stored_tickers = rows_of(tables["ticker"], symbol="BTC/USDC")
            assert rows_of(tables["orderbook"], symbol="BTC/USDC")  # books are reported under USDC
            assert not any(r["symbol"] == "BTC/USD" for ch in ("orderbook", "trades", "ticker")
                           for r in tables[ch].to_pylist())
            unrequested_events = rows_of(tables["events"], event="unrequested")
            if aliased:
                assert stored_trades == sent_trades and len(stored_tickers) == sent_tickers
                assert unrequested == 0 and not unrequested_events and "unrequested" not in status
                return
            assert not stored_trades and not stored_tickers
            # every row counted: one per trade and one per ticker message, none silently lost
            assert unrequested == len(sent_trades) + sent_tickers
            assert f"| unrequested {unrequested}" in status
            assert {(e["symbol"], e["channel"]) for e in unrequested_events} == {("BTC/USD", "trades"),
                                                                                 ("BTC/USD", "ticker")}
            assert all("aliases" in e["reason"] for e in unrequested_events)
            # Prometheus counts the event rows under their own label, not as "other"
            assert metrics.registry.get_sample_value("fluxforge_stream_events_total", {
                "exchange": "coinbase", "event": "unrequested"}) == len(unrequested_events)
            facts = collect(cfg, with_units=False)
            assert facts["events_last_hour"]["unrequested"] == len(unrequested_events)
            usd = [s for s in facts["streams"] if s["symbol"] == "BTC/USD"]
            assert len(usd) == 1 and not usd[0]["configured"]
            assert usd[0]["unrequested_last_hour"] == sum(e["count"] for e in unrequested_events) > 0
            assert "unrequested" in {w.code for w in check(facts, cfg)}

    asyncio.run(asyncio.wait_for(body(), 90))


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "grouped"])
def test_a_refused_book_stops_only_its_own_when_books_are_isolated(tmp_path, isolate):
    async def body():
        sim = SimOptions(rate=25, trades_per_update=0.7, ticker_interval=0.3, seed=43)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            lx.faults.refuse("ETH/USDT")  # listed by REST, refused on the WebSocket (halted, delisted)
            cfg = make_config(tmp_path, [exchange_entry(lx, "coinbase", SYMBOLS, book_depth=DEPTH,
                                                        isolate_books=isolate)])
            async with running_collector(cfg) as collector:
                rec = collector.recorder
                # the refusal has been answered and trades/tickers of every symbol flow: the connection is fine
                await wait_until(lambda: rec.event_counts["error"] >= 1
                                 and all(("coinbase", ch, s) in rec.last_seen for s in SYMBOLS
                                         for ch in ("trades", "ticker")), 30, what="refusal and trades/tickers")
                if isolate:
                    await wait_until(lambda: all(len(rows_of_book(lx, s)) >= 20 for s in ("BTC/USDT", "XRP/USDT")),
                                     30, what="the other books flowing")
                books_subscribed = {s for (s, ch), conns in lx.hub.subscribers.items() if conns and ch == "orderbook"}
                lx.freeze()
                await drained(lx, collector)
            tables = ready_tables(tmp_path)
            booked = {r["symbol"] for r in tables["orderbook"].to_pylist()}
            errors = rows_of(tables["events"], event="error")
            assert any("Failure to subscribe" in e["reason"] and "ETH-USDT" in e["reason"] for e in errors), errors
            if isolate:
                assert books_subscribed == booked == {"BTC/USDT", "XRP/USDT"}
            else:  # one refused product failed the whole grouped subscribe: no book at all
                assert books_subscribed == booked == set()

    asyncio.run(asyncio.wait_for(body(), 90))


def test_a_refused_isolated_book_is_retried_with_backoff_until_served(tmp_path):
    """The refusal is not waited out until a reconnect: the symbol's watch fails, is counted and retried
    with back-off; once the exchange serves the product again its book flows, on the same connection,
    without the other books resubscribing."""
    async def body():
        sim = SimOptions(rate=25, trades_per_update=0.7, ticker_interval=0.3, seed=44)
        async with LoopbackExchange("sim", SYMBOLS, sim=sim) as lx:
            lx.faults.refuse("ETH/USDT")
            cfg = make_config(tmp_path, [exchange_entry(lx, "coinbase", SYMBOLS, book_depth=DEPTH, isolate_books=True)])
            async with running_collector(cfg) as collector:
                rec = collector.recorder
                others = ("BTC/USDT", "XRP/USDT")
                await wait_until(lambda: rec.event_counts["error"] >= 3 and all(len(rows_of_book(lx, s)) >= 10
                                                                               for s in others),
                                 30, what="three refused subscribes of ETH/USDT and the other books flowing")
                assert ("coinbase", "orderbook", "ETH/USDT") not in rec.last_seen
                lx.faults.resume()  # the exchange serves the product again
                await wait_until(lambda: len(rows_of_book(lx, "ETH/USDT")) >= 10, 30, what="ETH/USDT's book served")
                lx.freeze()
                await drained(lx, collector)
            assert lx.sent.connections_opened == 1  # nothing reconnected
            tables = ready_tables(tmp_path)
            events = tables["events"].to_pylist()
            assert [e["reason"] for e in events if e["event"] == "reconnect"] == ["collector start"]
            errors = [e for e in events if e["event"] == "error" and "drained" not in e["reason"]]
            assert len(errors) >= 3 and all(e["symbol"] == "ETH/USDT" and e["channel"] == "orderbook"
                                            and "subscribe refused" in e["reason"] and "ETH-USDT" in e["reason"]
                                            for e in errors), errors
            for symbol in SYMBOLS:  # each book: one snapshot, every message stored, as sent
                stream = lx.sent.stream("coinbase", symbol, "orderbook")
                rows = rows_of(tables["orderbook"], symbol=symbol)
                assert len(stream.snapshots) == 1 and len(rows) == 1 + stream.messages, symbol
                assert [(r["nonce"], r["timestamp"]) for r in rows] == stream.values, symbol
            first_eth = rows_of(tables["orderbook"], symbol="ETH/USDT")[0]["recv_ns"]
            assert max(e["recv_ns"] for e in errors) < first_eth

    asyncio.run(asyncio.wait_for(body(), 90))


def rows_of_book(lx, symbol: str) -> list[int]:
    """Book messages the loopback has sent for `symbol` (to any Coinbase connection)."""
    return lx.sent.stream("coinbase", symbol, "orderbook").ids
