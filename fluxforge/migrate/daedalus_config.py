"""Translate a Daedalus `config.yaml` into a FluxForge config (`fluxforge config import-daedalus`).

Why a translator rather than accepting the old file: the strict loader refuses unknown keys
on purpose (a typo must not be silently ignored), and several old options mean something else
here (percentiles as fractions, thresholds in bps, per-method symbol lists). So each old key
is mapped by an explicit rule, converted where its unit differs, and every key without an
equivalent becomes a warning that says what to do instead. The result is checked against the
FluxForge models before it is printed, so it always passes `fluxforge config check` (given
the credential files it names).

The old format is Daedalus's own pydantic models (`config/config.py` of jp-quant/daedalus:
`ccxt.exchanges.<id>` with `channels: {watchOrderBook: [...], ...}`, `api_key`/`api_secret`/
`password`, `options`, `max_orderbook_depth`; the native `coinbase:` collector; `ingestion`,
`etl`, `features`, `storage`, `log_level`). docs/migrating-from-daedalus.md lists every rule.
"""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..collector.ccxt_loader import is_pro_exchange
from ..config import CHANNELS, Config
from .config_translation import Translation, mapping_at
from .daedalus_features import translate_features
from .daedalus_schema import EXCHANGE_RENAMES
from .daedalus_storage import translate_storage

METHOD_CHANNELS = {"watchOrderBook": "orderbook", "watchOrderBookForSymbols": "orderbook",
                   "watchTrades": "trades", "watchTradesForSymbols": "trades",
                   "watchTicker": "ticker", "watchTickers": "ticker"}
NATIVE_CHANNELS = {"level2": "orderbook", "market_trades": "trades", "ticker": "ticker", "ticker_batch": "ticker"}
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
INGESTION = {"flush_interval_seconds": ("collector.flush_interval", 0.0, 60.0),
             "queue_maxsize": ("collector.queue_max", 10, 10_000_000),
             "reconnect_delay": ("collector.reconnect_backoff_initial", 0.0, 3600.0),
             "segment_max_mb": ("collector.segment_max_mb", 0.0, 65536.0)}
BUILT_IN = {  # old key: (the value that is what FluxForge always does, what to know otherwise)
    "enable_fsync": (True, "FluxForge always fsyncs every flush (DESIGN 2): at most collector.flush_interval "
                           "is lost on a power cut"),
    "auto_reconnect": (True, "FluxForge always reconnects (capped backoff, collector.reconnect_backoff_*)"),
    "max_reconnect_attempts": (-1, "FluxForge never stops reconnecting (a service that gives up needs an "
                                   "operator); the backoff is capped by collector.reconnect_backoff_max"),
    "compression": ("zstd", "FluxForge writes zstd Parquet always"),
    "schedule_cron": (None, "the ETL is a service that processes each segment once it is ready; no schedule"),
    "delete_after_processing": (False, "processed segments stay in segments/done/ until retention frees them "
                                       "once verified in S3 (retention.*, or sync.delete_after_upload)"),
}
_NO_BRONZE = ("FluxForge's bronze is always Arrow IPC journals finished as zstd Parquet segments (one directory "
              "per segment); old raw files: `fluxforge import daedalus`")
INGESTION_NO_EQUIVALENT = {
    "batch_size": "FluxForge writes what arrived every collector.flush_interval as one fsync'd batch",
    "raw_format": _NO_BRONZE, "parquet_compression": _NO_BRONZE, "parquet_compression_level": _NO_BRONZE,
    "partition_by": "bronze segments are per host and time; features are partitioned exchange/symbol/date",
    "output_dir": "data_dir (default /var/lib/fluxforge) holds everything",
}
_STATE = "the ETL checkpoints atomically after every segment, under data_dir/state; nothing to configure"
_FIXED_LAYOUT = "feature files are partitioned exchange=/symbol=/date= (docs/schemas.md); not configurable"
LOG_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "WARN": "WARNING", "ERROR": "ERROR",
              "CRITICAL": "ERROR", "FATAL": "ERROR"}
TOP_LEVEL = ("ccxt", "coinbase", "ingestion", "etl", "features", "storage", "log_level", "log_format")


class TranslationError(ValueError):
    """The old config cannot become a valid FluxForge config; the message names both keys."""


class _Exchange:
    """One FluxForge exchange entry being assembled from one or two old sections."""

    def __init__(self, name: str, where: str):
        self.name = name
        self.where = where                  # the old section that opened it
        self.ccxt: dict[str, Any] = {}
        self.per_channel: dict[str, list[str]] = {}
        self.sources: dict[str, list[str]] = {}   # channel -> old keys of its symbol lists
        self.book_depth: tuple[int, str, str] | None = None   # (depth, old key, note)

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
                ex.add_symbols(channel, _symbol_list(symbols, f"{old_key}.{method}", tr), f"{old_key}.{method}")
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
        if channel in NATIVE_CHANNELS:
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


def _exchanges(old: dict[str, Any], tr: Translation) -> None:
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


def _bounded(value: Any, lo: float, hi: float) -> tuple[Any, str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value, ""
    fixed = min(value, hi) if value > lo else value  # <= lo stays as is, so the check names it
    return fixed, "" if fixed == value else f"{value} clamped to {hi:g}"


def _built_in(key: str, value: Any, old_key: str, tr: Translation) -> None:
    """An old switch whose setting FluxForge always has (recorded) or never has (a warning)."""
    if value == BUILT_IN[key][0]:
        tr.record(old_key, "(built in)", BUILT_IN[key][1])
    else:
        tr.warn(old_key, BUILT_IN[key][1])


def _ingestion(old: dict[str, Any], tr: Translation) -> None:
    for key, value in mapping_at(old, "ingestion").items():
        old_key = f"ingestion.{key}"
        if key in INGESTION:
            new, lo, hi = INGESTION[key]
            fixed, note = _bounded(value, lo, hi)
            tr.set(new, fixed, old_key, note)
            if key == "reconnect_delay" and isinstance(fixed, (int, float)) and fixed > 60:
                tr.set("collector.reconnect_backoff_max", fixed, old_key, "raised to the initial delay")
        elif key in BUILT_IN:
            _built_in(key, value, old_key, tr)
        elif key in INGESTION_NO_EQUIVALENT:
            tr.warn(old_key, INGESTION_NO_EQUIVALENT[key])
        else:
            tr.warn(old_key, "not a Daedalus ingestion option FluxForge knows: not translated")


def _etl(old: dict[str, Any], tr: Translation) -> None:
    """`etl:` except the orderbook processor_options (daedalus_features takes those)."""
    for key, value in mapping_at(old, "etl").items():
        old_key = f"etl.{key}"
        if key in BUILT_IN:
            _built_in(key, value, old_key, tr)
        elif key == "state":
            for sub in mapping_at(value):
                tr.warn(f"{old_key}.{sub}", _STATE)
        elif key == "channels":
            for channel, section in mapping_at(value).items():
                for sub, sub_value in mapping_at(section).items():
                    where = f"{old_key}.{channel}.{sub}"
                    if sub == "partition_cols":
                        tr.warn(where, _FIXED_LAYOUT)
                    elif sub == "enabled":
                        if sub_value is not True:
                            tr.warn(where, "the ETL always processes every channel of a segment")
                    elif sub == "processor_options" and channel == "orderbook":
                        continue
                    elif sub == "processor_options":
                        for opt in mapping_at(sub_value):
                            tr.warn(f"{where}.{opt}", "FluxForge's trade products are trade, volume and dollar bars "
                                                      "(etl.trades, docs/features.md); ticker rows stay in bronze")
                    else:
                        tr.warn(where, "not a Daedalus ETL channel option FluxForge knows: not translated")
        elif key in ("input_dir", "output_dir"):
            tr.warn(old_key, INGESTION_NO_EQUIVALENT["output_dir"])
        else:
            tr.warn(old_key, "not a Daedalus ETL option FluxForge knows: not translated")


def _logging(old: dict[str, Any], tr: Translation) -> None:
    level = old.get("log_level")
    if level is not None:
        new = LOG_LEVELS.get(str(level).upper())
        if new:
            tr.set("logging.level", new, "log_level", "" if new == str(level).upper() else f"{level} -> {new}")
        else:
            tr.warn("log_level", f"{level!r} is not a log level: logging.level keeps INFO")
    if "log_format" in old:
        tr.warn("log_format", "logs are structured (structlog): logging.format is auto, console, json or journald")


def _validate(tr: Translation) -> None:
    try:
        Config.model_validate(tr.config)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            path = ".".join(str(p) for p in err["loc"])
            origin = [o for o, n, _ in tr.mapped if n == path or n.startswith(path + ".")]
            source = f" (from {', '.join(origin)})" if origin else ""
            lines.append(f"{path}: {err['msg']}{source}")
        raise TranslationError("the translated config is invalid: " + "; ".join(lines)
                               + ": fix the old file's value and translate again") from None


def translate(old: Any) -> Translation:
    """A Daedalus config (parsed YAML) -> the FluxForge config with provenance and warnings."""
    if not isinstance(old, dict):
        raise TranslationError(f"a Daedalus config is a mapping at the top level, not {type(old).__name__}")
    tr = Translation()
    _exchanges(old, tr)
    _ingestion(old, tr)
    _etl(old, tr)
    translate_features(old, tr)
    translate_storage(old, tr)
    _logging(old, tr)
    for key in old:
        if key not in TOP_LEVEL:
            tr.warn(str(key), "not a Daedalus config section FluxForge knows: not translated")
    _validate(tr)
    return tr
