"""Loopback exchange: unmodified ccxt.pro talks to it instead of a real exchange.

Use in-process::

    async with LoopbackExchange("sim", ["BTC/USDT", "ETH/USDT"]) as lx:
        ex = ccxt.pro.binance(lx.ccxt_config("binance"))
        lx.faults.gap("BTC/USDT")          # a sequence gap on the next diff
        lx.sent.stream("binance", "BTC/USDT", "orderbook").ids   # what was sent

or as a subprocess: `LoopbackProcess` / `fluxforge loopback --print-config`.
"""
from .faults import FaultSpec, Faults
from .sentlog import SentLog, StreamLog
from .process import LoopbackProcess
from .server import LoopbackExchange
from .simulator import SimOptions

__all__ = ["LoopbackExchange", "LoopbackProcess", "SimOptions", "FaultSpec", "Faults", "SentLog", "StreamLog"]
