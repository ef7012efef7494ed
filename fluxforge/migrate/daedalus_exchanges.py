"""Daedalus's exchanges -> FluxForge `exchanges:` entries (part of `fluxforge config import-daedalus`).

Why its own module: an exchange entry is assembled from up to two old sections (a
`ccxt.exchanges.<id>` entry and the native `coinbase:` collector), its ccxt method lists
become per-channel symbol lists (ohlcv and bid/ask included, with the candle timeframe
Daedalus really asked for), and what ccxt.pro cannot serve on that exchange is left out
with a warning, because `fluxforge collect` would refuse the whole file for it (the same
rules, collector/channel_support.py, through `ccxt_facts`).
"""
from __future__ import annotations

from typing import Any

from ..collector.ccxt_loader import is_pro_exchange
from ..config import CHANNELS
from .ccxt_facts import default_ohlcv_timeframe, has, unsupported_channels
from .config_translation import Translation, mapping_at
from .daedalus_schema import EXCHANGE_RENAMES

METHOD_CHANNELS = {"watchOrderBook": "orderbook", "watchOrderBookForSymbols": "orderbook",
                   "watchTrades": "trades", "watchTradesForSymbols": "trades",
                   "watchTicker": "ticker", "watchTickers": "ticker",
                   "watchOHLCV": "ohlcv", "watchOHLCVForSymbols": "ohlcv", "watchBidsAsks": "bidsasks"}
NATIVE_CHANNELS = {"level2": "orderbook", "market_trades": "trades", "ticker": "ticker", "ticker_batch": "ticker",
                   "candles": "ohlcv"}
NATIVE_CANDLES = "5m"  # Coinbase Advanced Trade's `candles` channel: five-minute candles, nothing else
# What to collect instead when ccxt.pro cannot serve a channel on an exchange.
INSTEAD = {"ohlcv": "candles of any length are FluxForge's trade bars (etl.trades), built from the trades channel",
           "bidsasks": "the ticker channel carries the best bid and ask with their sizes",
           "orderbook": "", "trades": "", "ticker": ""}
_EVERY_MARKET = {"ohlcv": "an empty list made Daedalus call watchOHLCV() without a symbol, which ccxt refuses: "
                          "it recorded nothing; list the symbols to collect candles",
                 "bidsasks": "an empty list watched every market's best bid/ask; FluxForge collects the symbols "
                             "it is given: list them under channels.bidsasks"}
NATIVE_WS_URL = "wss://advanced-trade-ws.coinbase.com"
SECRETS = {"api_key": ("apiKey", "api_key"), "api_secret": ("secret", "secret"), "password": ("password", "password")}
_CACHE = ("the old collector's memory workaround; FluxForge records every message as it arrives, and a ccxt "
          "cache smaller than one message loses rows: removed (memory is bounded by collector.queue_max_mb)")
OPTIONS_NO_EQUIVALENT = {
    "max_concurrent_subscriptions": "subscriptions need no limit here; REST book snapshots are paced by "
                                    "collector.max_concurrent_snapshots and collector.snapshot_spacing",
    "bulk_batch_size": "the collector groups watches itself; removed",
    "tradesLimit": _CACHE, "OHLCVLimit": _CACHE, "ordersLimit": _CACHE,
}
class _Exchange:
    """One FluxForge exchange entry being assembled from one or two old sections."""

    def __init__(self, name: str, where: str):
        self.name = name
        self.where = where                  # the old section that opened it
        self.ccxt: dict[str, Any] = {}
        self.per_channel: dict[str, list[str]] = {}
        self.sources: dict[str, list[str]] = {}   # channel -> old keys of its symbol lists
        self.book_depth: tuple[int, str, str] | None = None   # (depth, old key, note)
        self.timeframes: dict[str, list[str]] = {}  # ohlcv timeframe -> the old keys that asked for it

    def add_timeframe(self, timeframe: str, old_key: str) -> None:
        self.timeframes.setdefault(timeframe, []).append(old_key)

    def drop(self, channel: str) -> None:
        self.per_channel.pop(channel, None)
        self.sources.pop(channel, None)
        if channel == "ohlcv":
            self.timeframes.clear()

    def add_symbols(self, channel: str, symbols: list[str], old_key: str) -> None:
        have = self.per_channel.setdefault(channel, [])
        have += [s for s in symbols if s not in have]
        if old_key not in self.sources.setdefault(channel, []):
            self.sources[channel].append(old_key)

    def symbols(self) -> list[str]:
        out: list[str] = []
        for channel in CHANNELS:
            out += [s for s in self.per_channel.get(channel, []) if s not in out]
        return out


def _symbol_list(value: Any, old_key: str, tr: Translation) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        tr.warn(old_key, "is not a list of names: not translated")
        return []
    return value


def _secret(ex: _Exchange, key: str, value: Any, old_key: str, tr: Translation) -> None:
    if not value:
        return
    field, stem = SECRETS[key]
    if field in ex.ccxt:
        tr.warn(old_key, f"{ex.name} already has its {field} from another old section; this one is not used")
        return
    ex.ccxt[field] = tr.credential(old_key, f"{ex.name}_{stem}", f"exchanges[{ex.name}].ccxt.{field}")


def _ccxt_exchange(old_id: str, section: Any, exchanges: dict[str, _Exchange], tr: Translation) -> None:
    where = f"ccxt.exchanges.{old_id}"
    if not isinstance(section, dict):
        tr.warn(where, "is not a mapping: exchange not translated")
        return
    name = EXCHANGE_RENAMES.get(old_id, old_id)
    if name != old_id:
        tr.record(where, f"exchanges[{name}]", f"ccxt.pro calls {old_id!r} {name!r}")
    ex = exchanges.setdefault(name, _Exchange(name, where))
    for key, value in section.items():
        old_key = f"{where}.{key}"
        if key in SECRETS:
            _secret(ex, key, value, old_key, tr)
        elif key == "channels":
            if not isinstance(value, dict):
                tr.warn(old_key, "is not a mapping of ccxt methods to symbol lists: not translated")
            for method, symbols in mapping_at(section, "channels").items():
                channel = METHOD_CHANNELS.get(method)
                if channel is None:
                    tr.warn(f"{old_key}.{method}", "FluxForge has no bronze channel for this ccxt method: not collected")
                    continue
                listed = _symbol_list(symbols, f"{old_key}.{method}", tr)
                if channel in _EVERY_MARKET and symbols == []:
                    tr.warn(f"{old_key}.{method}", _EVERY_MARKET[channel])
                    continue
                ex.add_symbols(channel, listed, f"{old_key}.{method}")
                if channel == "ohlcv":
                    ex.add_timeframe(default_ohlcv_timeframe(name), f"{old_key}.{method}")
        elif key == "options":
            for opt, opt_value in mapping_at(section, "options").items():
                if opt in OPTIONS_NO_EQUIVALENT:
                    tr.warn(f"{old_key}.{opt}", OPTIONS_NO_EQUIVALENT[opt])
                elif opt == "enableRateLimit":
                    ex.ccxt["enableRateLimit"] = opt_value
                    tr.record(f"{old_key}.{opt}", f"exchanges[{name}].ccxt.enableRateLimit")
                else:
                    ex.ccxt.setdefault("options", {})[opt] = opt_value
                    tr.record(f"{old_key}.{opt}", f"exchanges[{name}].ccxt.options.{opt}")
        elif key == "max_orderbook_depth":
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                ex.book_depth = (min(value, 1000), old_key, "" if value <= 1000 else f"{value} capped at 1000")
            elif value is not None:
                tr.warn(old_key, f"{value!r} is not a positive whole number: book_depth keeps its default")
        else:
            tr.warn(old_key, "not a Daedalus exchange option FluxForge knows: not translated")
    if not is_pro_exchange(name):
        tr.warn(where, f"ccxt.pro has no exchange {name!r}: `fluxforge collect` refuses it; rename the entry")


def _native_coinbase(section: Any, exchanges: dict[str, _Exchange], tr: Translation) -> None:
    """Daedalus's own Coinbase Advanced Trade collector -> the ccxt.pro `coinbase` entry."""
    if not isinstance(section, dict):
        tr.warn("coinbase", "is not a mapping: not translated")
        return
    if not section.get("api_key"):
        tr.warn("coinbase", "Daedalus starts its native Coinbase collector only with an api_key, so it did not "
                            "run: not translated (list the products under a `coinbase` exchange entry to collect them)")
        return
    ex = exchanges.setdefault("coinbase", _Exchange("coinbase", "coinbase"))
    channels = _symbol_list(section.get("channels", ["ticker", "level2", "market_trades"]), "coinbase.channels", tr)
    products = _symbol_list(section.get("product_ids", ["BTC-USD", "ETH-USD"]), "coinbase.product_ids", tr)
    symbols = [p.replace("-", "/", 1) for p in products if "-" in p]
    if len(symbols) < len(products):
        tr.warn("coinbase.product_ids", "entries without '-' are not Coinbase product ids: not translated")
    for channel in channels:
        if channel == "candles":  # asked for by the channel entry (the products are everyone's)
            ex.add_symbols("ohlcv", symbols, "coinbase.channels.candles")
            ex.add_timeframe(NATIVE_CANDLES, "coinbase.channels.candles")
        elif channel in NATIVE_CHANNELS:
            ex.add_symbols(NATIVE_CHANNELS[channel], symbols, "coinbase.product_ids")
        elif channel != "heartbeats":  # keep-alive only; ccxt and the collector's checks handle it
            tr.warn(f"coinbase.channels.{channel}", "no FluxForge bronze channel for it: not collected")
    for key, value in section.items():
        if key in SECRETS:
            _secret(ex, key, value, f"coinbase.{key}", tr)
        elif key == "ws_url" and value and value != NATIVE_WS_URL:
            ex.ccxt.setdefault("urls", {}).setdefault("api", {})["ws"] = value
            tr.record("coinbase.ws_url", "exchanges[coinbase].ccxt.urls.api.ws")
        elif key == "ws_url":
            tr.record("coinbase.ws_url", "exchanges[coinbase]", "Coinbase's own URL, ccxt's default")
        elif key == "level2_batch_size":
            tr.warn("coinbase.level2_batch_size", "ccxt.pro subscribes Coinbase books itself; no equivalent")
        elif key not in ("channels", "product_ids", "ws_url"):
            tr.warn(f"coinbase.{key}", "not a Daedalus Coinbase option FluxForge knows: not translated")


def _timeframe_note(name: str, timeframe: str, old_key: str) -> str:
    if old_key == "coinbase.channels.candles":
        return f"{timeframe}: Coinbase's candles channel is five-minute candles"
    note = f"{timeframe}: ccxt's watch_ohlcv default on {name}, which Daedalus asked for (it passed no timeframe)"
    if has(name, "watchOHLCVForSymbols"):  # Daedalus's _bulk_loop awaited those and wrote nothing
        note += "; Daedalus's bulk path (watchOHLCVForSymbols) recorded no candles here, FluxForge will"
    return note


def _check_channels(ex: _Exchange, tr: Translation) -> None:
    """Leave out, with a warning at each old key, what ccxt.pro cannot serve on this exchange
    (`fluxforge collect` would refuse the whole config): a channel it lacks, a timeframe it lacks."""
    for timeframe in list(ex.timeframes):
        reason = unsupported_channels(ex.name, ["ohlcv"], [timeframe]).get("ohlcv")
        if reason and "timeframe" in reason:
            for old_key in ex.timeframes.pop(timeframe):
                tr.warn(old_key, f"{reason}: those candles are not collected; add one it has to "
                                 "ohlcv_timeframes, or use trade bars (etl.trades) built from the trades channel")
    if "ohlcv" in ex.per_channel and not ex.timeframes:
        ex.drop("ohlcv")
    for channel, reason in unsupported_channels(ex.name, list(ex.per_channel), list(ex.timeframes)).items():
        for old_key in ex.sources.get(channel, []):
            tr.warn(old_key, f"{reason}: not collected" + (f"; {INSTEAD[channel]}" if INSTEAD[channel] else ""))
        ex.drop(channel)


def translate_exchanges(old: dict[str, Any], tr: Translation) -> None:
    """`ccxt.exchanges.*` and `coinbase:` -> `exchanges:` (with provenance, warnings, credentials)."""
    exchanges: dict[str, _Exchange] = {}
    for old_id, section in mapping_at(old, "ccxt", "exchanges").items():
        _ccxt_exchange(str(old_id), section, exchanges, tr)
    for key in mapping_at(old, "ccxt"):
        if key != "exchanges":
            tr.warn(f"ccxt.{key}", "not a Daedalus ccxt option FluxForge knows: not translated")
    if "coinbase" in old:
        _native_coinbase(old["coinbase"], exchanges, tr)
    entries = []
    for ex in exchanges.values():
        _check_channels(ex, tr)
        symbols = ex.symbols()
        if not symbols:
            tr.warn(ex.where, "no symbol of a channel FluxForge records: exchange not translated")
            tr.credentials[:] = [c for c in tr.credentials if not c.new_path.startswith(f"exchanges[{ex.name}]")]
            tr.mapped[:] = [m for m in tr.mapped if not m[1].startswith(f"exchanges[{ex.name}]")]
            continue
        i = len(entries)
        per_channel = {c: ex.per_channel[c] for c in CHANNELS if c in ex.per_channel}
        same = all(listed == symbols for listed in per_channel.values())
        # one list for every channel when they agree, else each channel its own (config_exchange.py)
        entry: dict[str, Any] = {"name": ex.name, **({"ccxt": ex.ccxt} if ex.ccxt else {}),
                                 **({"symbols": symbols, "channels": list(per_channel)} if same
                                    else {"channels": per_channel})}
        for channel, old_keys in ex.sources.items():
            for old_key in old_keys:
                tr.record(old_key, f"exchanges.{i}.symbols" if same else f"exchanges.{i}.channels.{channel}",
                          f"channel {channel}")
        if ex.timeframes:
            entry["ohlcv_timeframes"] = list(ex.timeframes)
            for timeframe, old_keys in ex.timeframes.items():
                for old_key in old_keys:
                    tr.record(old_key, f"exchanges.{i}.ohlcv_timeframes", _timeframe_note(ex.name, timeframe, old_key))
        if ex.book_depth:
            entry["book_depth"] = ex.book_depth[0]
            tr.record(ex.book_depth[1], f"exchanges.{i}.book_depth", ex.book_depth[2])
        tr.mapped[:] = [(o, n.replace(f"exchanges[{ex.name}]", f"exchanges.{i}"), note) for o, n, note in tr.mapped]
        entries.append(entry)
    for cred in tr.credentials:
        for i, entry in enumerate(entries):
            cred.new_path = cred.new_path.replace(f"exchanges[{entry['name']}]", f"exchanges.{i}")
    if entries:
        tr.config["exchanges"] = entries
