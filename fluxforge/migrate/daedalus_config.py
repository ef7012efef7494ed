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

from ..config import Config
from .config_translation import Translation, mapping_at
from .daedalus_exchanges import translate_exchanges
from .daedalus_features import translate_features
from .daedalus_storage import translate_storage

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
    translate_exchanges(old, tr)
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
