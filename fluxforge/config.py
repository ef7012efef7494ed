"""The whole FluxForge configuration as pydantic models, loaded from one YAML file.

Why one module: every service reads the same file (`/etc/fluxforge/config.yaml`),
so a typo must fail the same way everywhere, naming the field path and the reason,
and the process must exit 78 (EX_CONFIG) so systemd's RestartPreventExitStatus=78
stops a crash loop.

Secrets never need to live in the file: any string value may be written as
`${env:NAME}` (read from the environment) or `${credential:NAME}` (read from
`$CREDENTIALS_DIRECTORY/NAME`, i.e. systemd's LoadCredential=; the packaged
units load `/etc/fluxforge/credentials/<file>` as the credential `fluxforge_<file>`).
Masking for display is done by `masked_dump()`: every value that came from such a
reference, every value under a secret-looking key, and URL userinfo.

Floats must be finite (`.inf`/`.nan` would pass `gt=0` and crash later), and
durations and sizes that have a sensible ceiling are bounded.
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from .config_base import DAY, HOUR, StrictModel, distinct_partitions
from .config_exchange import CHANNELS, ExchangeConfig  # noqa: F401  (CHANNELS: re-exported, migrate/ imports it here)
from .config_refs import UnresolvedReference, mask_secrets, resolve_refs
from .etl.naming import exchange_path_value
from .live.settings import LiveConfig, ip_address_text

EX_CONFIG = 78
DEFAULT_CONFIG_PATH = Path("/etc/fluxforge/config.yaml")
DEFAULT_MAX_GAP_MS = 60_000  # etl.max_gap_seconds, also what an EngineBank uses when not told



class ConfigError(Exception):
    """Invalid configuration: the message names the field path and the reason."""

    exit_code = EX_CONFIG


class FeatureOptions(StrictModel):
    """Options of the Cython feature kernels (docs/features.md explains each)."""

    max_levels: int = Field(10, ge=1, le=50)
    ofi_levels: int = Field(5, ge=1, le=50)
    ofi_decay_alpha: float = Field(0.0, ge=0.0, le=100.0, description="0 = equal weights; w_i = exp(-alpha*i)")
    bands_bps: list[float] = Field(default_factory=lambda: [5.0, 10.0, 25.0, 50.0, 100.0],
                                   description="depth band edges (bps from mid); docs/features.md says why these")
    horizons: list[float] = Field(default_factory=lambda: [1.0, 5.0, 30.0, 60.0])
    bar_durations: list[int] = Field(default_factory=lambda: [1, 5, 30, 60])
    hf_emit_interval: float = Field(1.0, ge=0.0, le=HOUR)
    tight_spread_threshold: float = Field(1e-4, gt=0.0, le=1.0, description="relative spread at or below which the book is 'tight'")
    wide_spread_threshold: float = Field(5e-4, gt=0.0, le=1.0, description="relative spread at or above which the book is 'wide' (static regime)")
    use_dynamic_spread_regime: bool = True
    spread_regime_window: float = Field(300.0, gt=0.0, le=DAY, description="seconds")
    spread_tight_percentile: float = Field(25.0, ge=0.0, le=100.0)
    spread_wide_percentile: float = Field(75.0, ge=0.0, le=100.0)
    kyle_lambda_window: float = Field(60.0, gt=0.0, le=DAY, description="seconds")
    enable_vpin: bool = True
    vpin_bucket_volume: float = Field(10.0, gt=0.0, description="base units per volume bucket")
    vpin_window_buckets: int = Field(50, ge=1, le=100_000)
    keep_raw_arrays: bool = False
    momentum_window: float = Field(60.0, gt=0.0, le=DAY, description="seconds: depth sigma and slope/centre-of-gravity momentum")
    book_max_depth: int = Field(25_000, ge=1, le=10_000_000,
                                description="levels per side the book rebuild keeps; beyond, the worst "
                                            "price is evicted (counted as book_evicted)")

    @field_validator("bands_bps", "horizons")
    @classmethod
    def _positive_increasing(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("must not be empty")
        if any(x <= 0 for x in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("must be positive and strictly increasing")
        if v[-1] > DAY:
            raise ValueError(f"must be at most {DAY:g} (one day)")
        return v

    @field_validator("bar_durations")
    @classmethod
    def _bar_durations(cls, v: list[int]) -> list[int]:
        if any(x <= 0 for x in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("must be positive whole seconds, strictly increasing")
        if v and v[-1] > DAY:
            raise ValueError(f"must be at most {DAY:g} seconds (one day)")
        return v

    @field_validator("spread_tight_percentile", "spread_wide_percentile")
    @classmethod
    def _percent(cls, v: float) -> float:
        # Daedalus wrote these as fractions (0.2 = 20th percentile); here 0.2 would silently be
        # the 0.2nd percentile, so a value in (0, 1) is refused with the likely intent.
        if 0.0 < v < 1.0:
            raise ValueError(f"percent, 0-100: did you mean {round(v * 100.0, 9):g}? "
                             f"(a value in (0, 1) is taken for a fraction and refused)")
        return v

    @model_validator(mode="after")
    def _levels(self) -> "FeatureOptions":
        if self.ofi_levels > self.max_levels:
            raise ValueError("ofi_levels must be <= max_levels")
        if self.spread_tight_percentile >= self.spread_wide_percentile:
            raise ValueError("spread_tight_percentile must be < spread_wide_percentile")
        return self


class TradeOptions(StrictModel):
    """Options of the trade products (docs/features.md, "Trade bars")."""

    bar_durations: list[int] = Field(default_factory=lambda: [1, 5, 60, 300, 3600],
                                     description="trade time bars, whole seconds; [] disables them")
    volume_bar_size: float = Field(0.0, ge=0.0, description="base units per volume bar; 0 disables them")
    dollar_bar_size: float = Field(1_000_000.0, ge=0.0, description="quote units per dollar bar; 0 disables them")
    per_trade: bool = Field(False, description="write features/trades/, one row per trade (opt-in: a busy symbol "
                            "makes millions of rows a day)")
    horizons: list[int] = Field(default_factory=lambda: [5, 60, 300],
                                description="per-trade rolling windows, whole seconds")
    ticker_horizons: list[int] = Field(default_factory=lambda: [5, 60, 300],
                                       description="windows (t-h, t] of the ticker features, whole seconds")

    @field_validator("bar_durations", "horizons", "ticker_horizons")
    @classmethod
    def _bar_durations(cls, v: list[int]) -> list[int]:
        return FeatureOptions._bar_durations(v)


class CollectorConfig(StrictModel):
    flush_interval: float = Field(1.0, gt=0.0, le=60.0, description="seconds between fsync'd journal flushes")
    segment_max_mb: float = Field(64.0, gt=0.0, le=65536.0)
    segment_max_seconds: float = Field(3600.0, gt=0.0, le=DAY)
    queue_max: int = Field(20000, ge=10, le=10_000_000)
    queue_max_mb: float = Field(48.0, gt=0.0, le=65536.0, description="estimated memory of the rows not yet "
                                "durable; with queue_max, whichever is reached first bounds the queue")
    overflow_policy: Literal["block", "drop"] = "block"
    stall_timeout: float = Field(60.0, gt=0.0, le=DAY)
    reconnect_backoff_initial: float = Field(1.0, gt=0.0, le=HOUR)
    reconnect_backoff_max: float = Field(60.0, gt=0.0, le=HOUR)
    max_concurrent_snapshots: int = Field(4, ge=1, le=1000)
    snapshot_spacing: float = Field(0.25, ge=0.0, le=60.0, description="seconds between book snapshot fetches")
    min_free_mb: float = Field(64.0, ge=0.0, description="below this free space the collector drops with accounting")
    max_loop_lag: float = Field(5.0, gt=0.0, le=HOUR, description="watchdog health: event-loop lag, seconds")
    max_queue_age: float = Field(30.0, gt=0.0, le=HOUR, description="watchdog health: oldest queued item, seconds")
    max_flush_age: float = Field(30.0, gt=0.0, le=HOUR, description="watchdog health: time since last flush, seconds")


class EtlConfig(StrictModel):
    poll_interval: float = Field(2.0, gt=0.0, le=HOUR, description="seconds, when inotify is unavailable")
    row_group_rows: int = Field(65536, ge=1024, le=16_777_216)
    max_segment_seconds: float = Field(600.0, gt=0.0, le=DAY, description="watchdog health: longest time one segment may take")
    reorder_window: float = Field(5.0, ge=0.0, le=HOUR, description="seconds of exchange time held back at a segment's end "
                                  "so rows of the next segment that are up to this much older still merge in order")
    max_gap_seconds: float = Field(DEFAULT_MAX_GAP_MS / 1000, ge=0.001, le=DAY,
                                   description="a longer hole in exchange time between a symbol's consecutive book rows "
                                   "(trades) resets its book features (trade products) as a gap event does")
    features: FeatureOptions = Field(default_factory=FeatureOptions)
    trades: TradeOptions = Field(default_factory=TradeOptions)
    symbol_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description='"exchange:SYMBOL" -> etl.trades options for that symbol only')
    live: LiveConfig = Field(default_factory=LiveConfig)

    @property
    def max_gap_ms(self) -> int:
        return int(round(self.max_gap_seconds * 1000))

    @field_validator("symbol_overrides")
    @classmethod
    def _overrides(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for key, opts in v.items():
            if ":" not in key:
                raise ValueError(f"{key!r}: keys are 'exchange:SYMBOL', e.g. 'binance:BTC/USDT'")
            TradeOptions(**opts)  # every override must be a valid etl.trades option
        return v


class CompactionConfig(StrictModel):
    min_age_days: int = Field(1, ge=1, le=3650, description="partitions with date <= today-min_age_days (UTC) are closed")
    target_file_mb: float = Field(128.0, gt=0.0, le=65536.0)


class SyncConfig(StrictModel):
    enabled: bool = False
    bucket: str | None = None
    prefix: str = "fluxforge"
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: Literal["auto", "virtual", "path"] = "auto"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    workers: int = Field(4, ge=1, le=64)
    multipart_threshold_mb: float = Field(16.0, gt=0.0, le=5120.0, description="S3 PUT limit: 5 GiB")
    multipart_chunk_mb: float = Field(8.0, ge=5.0, le=5120.0, description="S3 part limits: 5 MiB .. 5 GiB")
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = Field(5, ge=1, le=100)
    checksum_algorithm: Literal["CRC32C", "SHA256", "CRC32", "SHA1"] = "CRC32C"
    upload_bronze: bool = True
    upload_features: bool = True
    delete_after_upload: bool = False
    require_time_sync: bool = True
    time_sync_wait: float = Field(60.0, ge=0.0, le=HOUR, description="seconds to wait for clock sync before skipping the run")
    connect_timeout: float = Field(10.0, gt=0.0, le=HOUR, description="seconds, per S3 connection attempt")
    read_timeout: float = Field(60.0, gt=0.0, le=HOUR, description="seconds, per S3 socket read")

    @model_validator(mode="after")
    def _bucket(self) -> "SyncConfig":
        if self.enabled and not self.bucket:
            raise ValueError("bucket is required when sync is enabled")
        return self


class RetentionConfig(StrictModel):
    disk_high_watermark: float = Field(85.0, gt=0.0, le=100.0, description="percent used that triggers deletion")
    disk_low_watermark: float = Field(75.0, gt=0.0, le=100.0, description="delete until usage is below this")
    allow_unsynced_deletion: bool = False
    free_unprocessed: bool = Field(False, description="may free ready/ segments the ETL has not processed yet "
                                   "(verified in S3 first; their features then need `fluxforge replay`)")

    @model_validator(mode="after")
    def _marks(self) -> "RetentionConfig":
        if self.disk_low_watermark > self.disk_high_watermark:
            raise ValueError("disk_low_watermark must be <= disk_high_watermark")
        return self


class StatusConfig(StrictModel):
    """Thresholds of `fluxforge status`: beyond them a warning is raised and the exit code is non-zero."""

    max_etl_lag: float = Field(900.0, gt=0.0, description="seconds a finished segment may wait for the ETL")
    max_message_age: float = Field(120.0, gt=0.0, description="seconds since the last message of a configured symbol")
    max_gaps_per_hour: int = Field(3, ge=0, description="gap/resync/reconnect events per symbol in the last hour")
    max_dropped_per_hour: int = Field(0, ge=0, description="rows dropped (queue overflow, full disk) in the last hour")
    max_sync_age: float = Field(7200.0, gt=0.0, description="seconds since the last successful sync (when enabled)")


class MetricsConfig(StrictModel):
    """Prometheus metrics: /metrics endpoints of the services, node_exporter textfiles of the timers."""

    enabled: bool = True
    listen: str = Field("127.0.0.1", description="address the /metrics endpoints bind to (loopback by default)")
    collector_port: int = Field(9464, ge=0, le=65535, description="0: any free port (logged as metrics_listening)")
    etl_port: int = Field(9465, ge=0, le=65535, description="0: any free port (logged as metrics_listening)")
    textfile_dir: Path = Field(Path("/var/lib/prometheus/node-exporter"),
                               description="node_exporter textfile-collector directory for compact/sync/retention")

    @field_validator("listen")
    @classmethod
    def _address(cls, v: str) -> str:
        return ip_address_text(v)

    @model_validator(mode="after")
    def _ports(self) -> "MetricsConfig":
        if self.collector_port == self.etl_port != 0:
            raise ValueError("collector_port and etl_port must differ")
        return self


class LoggingConfig(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "console", "json", "journald"] = "auto"


class Config(StrictModel):
    data_dir: Path = Path("/var/lib/fluxforge")
    host_id: str = Field(default_factory=lambda: socket.gethostname().split(".")[0])
    exchanges: list[ExchangeConfig] = Field(default_factory=list)
    collector: CollectorConfig = Field(default_factory=CollectorConfig)
    etl: EtlConfig = Field(default_factory=EtlConfig)
    compaction: CompactionConfig = Field(default_factory=CompactionConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    status: StatusConfig = Field(default_factory=StatusConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    # Paths (tuples of keys / list indices) whose value came from ${env:} / ${credential:}.
    _secret_paths: frozenset[tuple] = PrivateAttr(default_factory=frozenset)

    @field_validator("host_id")
    @classmethod
    def _host(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.]*", v):
            raise ValueError("must be letters, digits, '_' or '.' (it is part of segment and S3 names; no '-' or '/')")
        return v

    @field_validator("exchanges")
    @classmethod
    def _unique_names(cls, v: list[ExchangeConfig]) -> list[ExchangeConfig]:
        names = [e.name for e in v]
        if len(set(names)) != len(names):
            raise ValueError("exchange names must be unique")
        distinct_partitions(names, exchange_path_value, "exchange names")
        return v

    # Well-known places inside data_dir, so no module invents its own.
    @property
    def segments_dir(self) -> Path:
        return self.data_dir / "segments"

    @property
    def features_dir(self) -> Path:
        return self.data_dir / "features"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{loc}: {msg}")
    return "; ".join(lines)


def config_path(explicit: str | os.PathLike | None = None) -> Path:
    """--config, else $FLUXFORGE_CONFIG, else /etc/fluxforge/config.yaml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("FLUXFORGE_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def parse_config(data: Any, source: str = "<config>", secrets: bool = True) -> Config:
    """Validate `data`; `secrets=False`: unreadable secret references become placeholders (read-only commands)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, not {type(data).__name__}")
    refs: set[tuple] = set()
    unresolved: list[str] | None = None if secrets else []
    try:
        data = resolve_refs(data, (), refs, unresolved)
    except UnresolvedReference as e:
        raise ConfigError(str(e)) from None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_format_validation_error(e)}") from None
    cfg._secret_paths = frozenset(refs)
    return cfg


def load_config(explicit: str | os.PathLike | None = None, secrets: bool = True) -> Config:
    """Load and validate the config; raises ConfigError (exit 78) with the field path.

    `secrets=False`: for read-only commands, see `parse_config`."""
    path = config_path(explicit)
    try:
        text = path.read_bytes()  # bytes: YAML's own encoding rule (UTF-8, or UTF-16 with a BOM: a Windows editor's)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (use --config or $FLUXFORGE_CONFIG)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.reader.ReaderError as e:
        byte = f"{e.character:#04x}" if isinstance(e.character, int) else repr(e.character)
        raise ConfigError(f"{path}: not UTF-8 text (byte {byte} at offset {e.position}): save it as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    return parse_config(data, str(path), secrets)


def masked_dump(cfg: Config) -> dict[str, Any]:
    """The effective config as plain data, secrets masked: safe to print or log."""
    return mask_secrets(cfg.model_dump(mode="json"), secret_paths=cfg._secret_paths)
