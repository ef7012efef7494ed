"""Stream watchers: keep each exchange's subscriptions alive, whatever happens.

Why this shape: failures must stay local.  Each exchange runs in its own task
(`ExchangeRunner`), each channel of it in its own `StreamWatcher` (one call to
the `*_for_symbols` variant when the exchange has it, else one watcher per
symbol, and books one per symbol under `isolate_books`: `watch_plan.py` decides
from the entry's per-channel symbols), and a `StallMonitor` per exchange.  The
rows themselves are recorded by the tap (`tap.py`) as frames arrive; the watchers only keep calling ccxt's
`watch_*` (which is what subscribes, fetches snapshots and resubscribes after a
gap) and turn failures into event rows plus a capped, jittered backoff:

* InvalidNonce / ChecksumError -> `gap` (recorded by the tap with its symbol);
  the next `watch_*` call makes ccxt resubscribe and resync, and the first new
  book is recorded as `resync`;
* NetworkError (disconnect, timeout, stall) -> `reconnect` per symbol, backoff;
* any other error (a subscribe the exchange refused: `coinbase_refusal.py`) -> `error`
  (with the symbol when the watch has one), backoff, and the next call subscribes again;
* a websocket that is connected but silent for `stall_timeout` -> `stall`, and
  the connection is failed on purpose so ccxt reconnects and resubscribes;
* a watcher or stall monitor that dies of an unexpected exception is logged,
  recorded as an `error` event and restarted after a backoff (`supervised`),
  never silently lost;
* a CancelledError that does not come from cancelling our own task (ccxt
  cancels every pending future of a websocket client it closes) is a lost
  stream like a disconnect, not a reason to stop: only the collector's own
  cancellation at shutdown ends a watcher (`own_cancellation`).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import ccxt

from ..config import CollectorConfig, ExchangeConfig
from ..logs import get_logger
from .backoff import Backoff
from .channel_support import channel_problems
from .recorder import Recorder
from .watch_plan import plan_watches

log = get_logger("fluxforge.collector.watchers")
_GROUPED = {"orderbook": "watchOrderBookForSymbols", "trades": "watchTradesForSymbols", "ticker": "watchTickers",
            "ohlcv": "watchOHLCVForSymbols", "bidsasks": "watchBidsAsks"}


def own_cancellation() -> bool:
    """Inside `except CancelledError`: True when this task itself is being cancelled.

    False for a future cancelled under us by someone else (ccxt's `Client.close()`
    cancels the pending futures of every `watch_*` call on that connection), which
    must not end the watcher -- and with it, through `gather`, the whole exchange.
    """
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


class StreamWatcher:
    """Keeps one channel of one exchange (for a group of symbols) subscribed."""

    def __init__(self, exchange: Any, exchange_id: str, channel: str, symbols: list[str],
                 cfg: CollectorConfig, recorder: Recorder, partial_depth: int | None = None,
                 timeframes: list[str] = ()):
        self.exchange = exchange
        self.partial_depth = partial_depth  # books from the exchange's top-N stream (partial_books.py)
        self.exchange_id = exchange_id
        self.channel = channel
        self.symbols = symbols
        self.timeframes = list(timeframes)  # ohlcv only
        self.cfg = cfg
        self.recorder = recorder
        self.backoff = Backoff(cfg.reconnect_backoff_initial, cfg.reconnect_backoff_max)
        self.failures = 0

    def _watch(self) -> Any:
        ex, syms = self.exchange, self.symbols
        if self.partial_depth is not None and self.channel == "orderbook":
            return ex.watch_partial_book(syms[0], self.partial_depth)
        if self.channel == "bidsasks":  # ccxt's watch_bids_asks takes a symbol list
            return ex.watch_bids_asks(syms)
        if self.channel == "ohlcv":
            if len(syms) > 1 or len(self.timeframes) > 1 or ex.has.get(_GROUPED["ohlcv"]):
                return ex.watch_ohlcv_for_symbols([[s, tf] for s in syms for tf in self.timeframes])
            return ex.watch_ohlcv(syms[0], self.timeframes[0])
        if len(syms) > 1 or ex.has.get(_GROUPED[self.channel]):
            if self.channel == "orderbook":
                return ex.watch_order_book_for_symbols(syms)
            if self.channel == "trades":
                return ex.watch_trades_for_symbols(syms)
            return ex.watch_tickers(syms)
        if self.channel == "orderbook":
            return ex.watch_order_book(syms[0])
        if self.channel == "trades":
            return ex.watch_trades(syms[0])
        return ex.watch_ticker(syms[0])

    async def run(self) -> None:
        while True:
            try:
                await self._watch()
                self.backoff.reset()
                continue
            except asyncio.CancelledError:
                if own_cancellation():
                    raise
                for s in self.symbols:
                    self.recorder.event(self.exchange_id, s, self.channel, "reconnect",
                                        "ccxt cancelled the pending watch (connection closed)")
            except ccxt.InvalidNonce as e:
                # The tap recorded the `gap` with its symbol; ccxt resyncs on the next call.
                log.info("stream_resubscribe", exchange=self.exchange_id, channel=self.channel, reason=str(e))
                await asyncio.sleep(0.05)
                continue
            except ccxt.NetworkError as e:
                for s in self.symbols:
                    self.recorder.event(self.exchange_id, s, self.channel, "reconnect", f"{type(e).__name__}: {e}"[:300])
            except Exception as e:  # bad symbol, exchange error (a refused subscribe), ccxt bug: keep the others going
                symbol = self.symbols[0] if len(self.symbols) == 1 else None
                self.recorder.event(self.exchange_id, symbol, self.channel, "error", f"{type(e).__name__}: {e}"[:300])
            self.failures += 1
            await asyncio.sleep(self.backoff.next_delay())


async def supervised(name: str, exchange_id: str, run: Callable[[], Awaitable[None]], recorder: Recorder,
                     backoff: Backoff) -> None:
    """Run `run()` forever: an exception (or an unexpected return) is logged and it is restarted."""
    while True:
        try:
            await run()
            reason = "returned"
        except asyncio.CancelledError:
            if own_cancellation():
                raise
            reason = "CancelledError not sent by the collector"
        except Exception as e:  # noqa: BLE001 -- whatever it was, this task must keep running
            reason = f"{type(e).__name__}: {e}"[:300]
        log.error("task_died", task=name, exchange=exchange_id, reason=reason, note="restarting")
        recorder.event(exchange_id, None, None, "error", f"{name} died ({reason}); restarted")
        await asyncio.sleep(backoff.next_delay())


class StallMonitor:
    """Fails websocket connections that stay open but deliver nothing for `stall_timeout`.

    Silence is timed on the monotonic clock, from the check that first saw a connection's
    latest message (ccxt stamps `last_message_at` with the wall clock): a step of the wall
    clock (NTP after a boot without RTC, `date -s`, a VM resumed) neither fails every
    connection at once (forward) nor hides a dead one for as long as the step (back).
    A silence is seen at most one check interval late.  While the `block` overflow policy has
    stopped the readers (a slow disk), silence is the collector's own and is not counted: it
    counts from when reading resumed, so a writer stuck for longer than `stall_timeout` does
    not fail every healthy connection into a reconnect and resync."""

    def __init__(self, exchange: Any, exchange_id: str, channel_symbols: dict[str, list[str]],
                 cfg: CollectorConfig, recorder: Recorder):
        self.exchange = exchange
        self.exchange_id = exchange_id
        self.channel_symbols = channel_symbols
        self.timeout = cfg.stall_timeout
        self.recorder = recorder
        self.stalls = 0
        self._progress: dict[Any, tuple[tuple, float]] = {}  # client -> (its stamps, monotonic time first seen)

    def check(self) -> None:
        now = time.monotonic()
        queue = self.recorder.queue
        progress, self._progress = self._progress, {}
        for client in list((self.exchange.clients or {}).values()):
            if client.closed() or not client.isConnected:
                continue
            stamps = (client.last_message_at, client.connectionEstablished)  # compared, never subtracted
            seen, since = progress.get(client, (None, now))
            if seen != stamps or queue.reading_paused:
                since = now  # a message (or a new connection) since the last check, or not reading
            since = max(since, queue.reading_resumed_at)
            self._progress[client] = (stamps, since)
            silent = now - since
            if silent <= self.timeout:
                continue
            self.stalls += 1
            reason = f"no data for {silent:.1f}s on {client.url}"
            for ch, symbols in self.channel_symbols.items():
                for s in symbols:
                    self.recorder.event(self.exchange_id, s, ch, "stall", reason)
            client.on_error(ccxt.NetworkError(f"stall: {reason}"))

    async def run(self) -> None:
        interval = min(1.0, self.timeout / 4)
        while True:
            await asyncio.sleep(interval)
            self.check()


class ExchangeRunner:
    """One exchange: load markets (with backoff), drop unknown symbols, run the watches of its plan."""

    def __init__(self, exchange: Any, xcfg: ExchangeConfig, cfg: CollectorConfig, recorder: Recorder):
        self.exchange = exchange
        self.xcfg = xcfg
        self.cfg = cfg
        self.recorder = recorder
        self.symbols: list[str] = []
        self.watchers: list[StreamWatcher] = []
        self.monitor: StallMonitor | None = None

    async def _load_markets(self) -> None:
        backoff = Backoff(self.cfg.reconnect_backoff_initial, self.cfg.reconnect_backoff_max)
        while True:
            try:
                await self.exchange.load_markets()
                return
            except asyncio.CancelledError as e:
                if own_cancellation():
                    raise
                self.recorder.event(self.xcfg.name, None, None, "error", f"load_markets: {type(e).__name__}")
            except Exception as e:
                self.recorder.event(self.xcfg.name, None, None, "error", f"load_markets: {type(e).__name__}: {e}"[:300])
            await asyncio.sleep(backoff.next_delay())

    def _supported_channels(self) -> list[str]:
        """The configured channels the exchange can serve; each other one is an `error` event, once."""
        problems = channel_problems(self.exchange, list(self.xcfg.channels), self.xcfg.ohlcv_timeframes)
        for ch, reason in problems.items():
            self.recorder.event(self.xcfg.name, None, ch, "error", f"channel {ch!r} not collected: {reason}"[:300])
        return [ch for ch in self.xcfg.channels if ch not in problems]

    async def run(self) -> None:
        await self._load_markets()
        # a partial book stream is watched per symbol (Binance: one raw-stream connection each)
        grouped = {ch for ch, method in _GROUPED.items() if self.exchange.has.get(method)
                   and not (ch == "orderbook" and self.xcfg.book_stream == "partial")}
        plan = plan_watches(self.xcfg, self.exchange.markets or {}, grouped)
        for s in plan.unknown:
            self.recorder.event(self.xcfg.name, s, None, "error", f"unknown symbol {s!r} on {self.xcfg.name}; skipped")
        self.symbols = plan.symbols
        if not self.symbols:
            return
        supported = set(self._supported_channels())
        partial = self.xcfg.partial_depth if self.xcfg.book_stream == "partial" else None
        tfs = self.xcfg.ohlcv_timeframes
        for w in plan.watches:
            if w.channel not in supported:
                continue
            tf_groups = ([tfs] if w.channel in grouped else [[tf] for tf in tfs]) if w.channel == "ohlcv" else [[]]
            self.watchers += [StreamWatcher(self.exchange, self.xcfg.name, w.channel, list(w.symbols), self.cfg,
                                            self.recorder, partial if w.channel == "orderbook" else None, t)
                              for t in tf_groups]
        channel_symbols = {ch: syms for ch, syms in plan.channel_symbols.items() if ch in supported}
        self.monitor = StallMonitor(self.exchange, self.xcfg.name, channel_symbols, self.cfg, self.recorder)
        log.info("exchange_started", exchange=self.xcfg.name, symbols=len(self.symbols),
                 channels={ch: len(syms) for ch, syms in channel_symbols.items()},
                 watches=len(self.watchers), grouped=sorted(grouped), isolate_books=self.xcfg.isolate_books)
        backoff = lambda: Backoff(self.cfg.reconnect_backoff_initial, self.cfg.reconnect_backoff_max)  # noqa: E731
        name = self.xcfg.name
        await asyncio.gather(supervised("stall-monitor", name, self.monitor.run, self.recorder, backoff()),
                             *(supervised(f"watcher-{w.channel}", name, w.run, self.recorder, backoff())
                               for w in self.watchers))
