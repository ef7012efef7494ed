"""The loopback exchange: an aiohttp server on 127.0.0.1 speaking exchange wire protocols.

Why in-process and async: tests run ccxt.pro and the exchange in one asyncio
loop (`async with LoopbackExchange(...) as lx`), which lets a test inject a
fault at an exact moment (`lx.faults.gap()`) and read back what was sent
(`lx.sent`).  The same class backs the `fluxforge loopback` command for
subprocess use.  Control endpoints: `GET /_loopback/stats[?detail=1]`,
`GET /_loopback/config`, `POST /_loopback/fault` (`{"kind": "gap", ...}`).
"""
from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from . import binance, binanceus, coinbase, kraken, okx
from .events import binance_id, okx_inst_id
from .faults import FaultSpec, Faults
from .hub import LOOPBACK_KEY, Hub
from .sentlog import SentLog
from .simulator import SimMarket, SimOptions

HOST = "127.0.0.1"
CCXT_CONFIGS = {"binance": binance.ccxt_config, "okx": okx.ccxt_config, "binanceus": binanceus.ccxt_config,
                "kraken": kraken.ccxt_config, "coinbase": coinbase.ccxt_config}
PROTOCOLS = tuple(CCXT_CONFIGS)


class LoopbackExchange:
    """Serve a simulated (`mode="sim"`) or replayed (`mode="replay"`) market on 127.0.0.1."""

    def __init__(self, mode: str = "sim", symbols: list[str] | tuple[str, ...] = ("BTC/USDT", "ETH/USDT"), *,
                 sim: SimOptions | None = None, replay_files: list | tuple = (), speed: float = 1.0,
                 faults: list[FaultSpec | str] = (), port: int = 0, report_as: dict[str, str] | None = None):
        if mode == "sim":
            self.source = SimMarket(list(symbols), sim)
        elif mode == "replay":
            from .replay import CaptureReplay
            self.source = CaptureReplay(list(replay_files), speed=speed,
                                        ticker_interval=(sim or SimOptions()).ticker_interval)
        else:
            raise ValueError(f"mode must be 'sim' or 'replay', got {mode!r}")
        self.mode = mode
        # symbol -> the name its trades and tickers are reported under (Coinbase's USDC products: USD)
        self.report_as = dict(report_as or {})
        self.symbol_by_binance_id = {binance_id(s): s for s in self.source.symbols}
        self.symbol_by_okx_id = {okx_inst_id(s): s for s in self.source.symbols}
        self.sent = SentLog()
        self.hub = Hub(self.source.books, self.sent)
        self.faults = Faults(self.hub, self.sent)
        self.fault_schedule = [f if isinstance(f, FaultSpec) else FaultSpec.parse(f) for f in faults]
        self.requested_port = port
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle -------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        app[LOOPBACK_KEY] = self
        okx.add_routes(app)  # first: Binance's /ws/{tail} would also match /ws/v5/public
        binance.add_routes(app)
        binanceus.add_routes(app)
        kraken.add_routes(app)
        coinbase.add_routes(app)
        app.router.add_get("/_loopback/stats", self._http_stats)
        app.router.add_get("/_loopback/config", self._http_config)
        app.router.add_post("/_loopback/fault", self._http_fault)
        return app

    async def start(self) -> "LoopbackExchange":
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.requested_port)
        try:
            await site.start()
        except OSError:
            await self.stop()
            raise
        self.port = self._runner.addresses[0][1]
        self._tasks.append(asyncio.create_task(self._guard(self.source.run(self.hub.publish))))
        if self.fault_schedule:
            self._tasks.append(asyncio.create_task(self._guard(self.faults.run_schedule(self.fault_schedule))))
        return self

    async def _guard(self, coro) -> None:
        """Run a background job; a crash is recorded in the stats instead of vanishing."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - surfaced through stats and re-raised on stop
            self.sent.fault("internal_error", error=repr(e))
            raise

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for conn in list(self.hub.connections):
            conn.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "LoopbackExchange":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # -- what clients need -----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def ccxt_config(self, exchange: str = "binance") -> dict:
        """The dict to put under an exchange's `ccxt:` config key (or pass to the ccxt constructor)."""
        if exchange in CCXT_CONFIGS:
            return CCXT_CONFIGS[exchange](self.url, self.ws_url)
        raise ValueError(f"no loopback protocol for {exchange!r} (have: {', '.join(PROTOCOLS)})")

    def describe(self) -> dict:
        """What `fluxforge loopback --print-config` prints: where we are and how to talk to us."""
        return {"host": HOST, "port": self.port, "url": self.url, "mode": self.mode,
                "symbols": list(self.source.symbols), "stats_url": f"{self.url}/_loopback/stats",
                "ccxt": {p: self.ccxt_config(p) for p in PROTOCOLS}}

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or restart) the market: connections stay up, no new events are produced."""
        self.source.frozen = frozen

    def stats(self, detail: bool = False) -> dict:
        return {**self.sent.summary(detail), "source": self.source.status()}

    async def rest_delay(self) -> None:
        delay = self.hub.slow_delay()
        if delay:
            await asyncio.sleep(delay)

    # -- control endpoints -----------------------------------------------------------------
    async def _http_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats(detail=request.query.get("detail") in ("1", "true")))

    async def _http_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.describe())

    async def _http_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            kind = body.pop("kind")
            await self.faults.trigger(kind, **body)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return web.json_response({"ok": False, "error": str(e)}, status=400)
        return web.json_response({"ok": True})
