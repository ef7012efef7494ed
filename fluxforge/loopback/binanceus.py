"""Binance US (ccxt.pro `binanceus`): Binance's spot wire protocol at Binance US's own URLs.

Why a module of its own: Binance US speaks exactly Binance's market-data
protocol (same REST paths `/api/v3/...`, same `/ws` streams, same depthUpdate
U/u chaining), only at another host (`api.binance.us`, `stream.binance.us:9443`).
One loopback server cannot have two hosts, so Binance US lives under the path
prefix `/us` (`/us/api/v3/exchangeInfo`, `/us/ws`), served by binance.py's
handlers and recorded in the sent-log under its own protocol name `binanceus`,
so a test can tell the two venues apart and inject faults into one of them
(`faults.disconnect(protocol="binanceus")`).
"""
from __future__ import annotations

from aiohttp import web

from . import binance

PROTOCOL = "binanceus"
PREFIX = "/us"


def ccxt_config(base_url: str, ws_url: str) -> dict:
    """The `ccxt:` dict for ccxt.pro binanceus: Binance's config, at the `/us` URLs."""
    return binance.ccxt_config(base_url + PREFIX, ws_url + PREFIX)


def add_routes(app: web.Application) -> None:
    binance.add_routes(app, PREFIX, PROTOCOL)
