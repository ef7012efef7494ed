"""`fluxforge config import-daedalus`: a Daedalus config.yaml becomes a FluxForge config that passes
`fluxforge config check`, with secrets as credential references, every documented mapping carried
over (docs/migrating-from-daedalus.md, checked row by row), and a warning for every old key that has
no equivalent. Also the strict loader's refusal of fractional percentiles.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fluxforge.config import ConfigError, parse_config
from fluxforge.migrate.config_translation import render
from fluxforge.migrate.daedalus_config import translate
from tests.unit.test_config import _nested

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs/migrating-from-daedalus.md"

# A realistic old file, shaped like Daedalus's config.examples.yaml: three ccxt exchanges (one under
# its pre-4.5 ccxt id, with keys), per-method symbol lists that differ, the native Coinbase collector
# with its own keys, both generations of feature options, S3 in the sync job and in the ETL output.
OLD_YAML = """
storage:
  ingestion_storage: {backend: local, base_dir: ./data}
  etl_storage_input: {backend: local, base_dir: ./data}
  etl_storage_output:
    backend: s3
    base_dir: market-data-vault
    s3: {bucket: market-data-vault, region: us-east-1, aws_access_key_id: null, aws_secret_access_key: null}
  sync:
    enabled: true
    source: {backend: local, base_dir: ./data}
    destination:
      backend: s3
      base_dir: market-data-vault
      s3:
        bucket: market-data-vault
        region: us-east-1
        endpoint_url: http://minio:9000
        aws_access_key_id: AKIA-OLD-S3-ID
        aws_secret_access_key: OLD-S3-SECRET-VALUE
        max_pool_connections: 50
    compact_before_upload: false
    delete_after_transfer: true
    target_file_size_mb: 100
    max_workers: 8
    interval_seconds: 300
    paths: [raw/ready/ccxt/ticker/]
  paths: {raw_dir: raw, state_dir: temp/state}
coinbase:
  api_key: organizations/abc/apiKeys/OLD-CB-NATIVE-KEY
  api_secret: "-----BEGIN EC PRIVATE KEY-----\\nOLD-CB-NATIVE-PEM\\n-----END EC PRIVATE KEY-----\\n"
  product_ids: [BTC-USD, ETH-USD]
  channels: [ticker, level2, market_trades, heartbeats]
  ws_url: wss://advanced-trade-ws.coinbase.com
  level2_batch_size: 10
ccxt:
  exchanges:
    binanceus:
      max_orderbook_depth: 50
      api_key: OLD-BINANCEUS-KEY
      api_secret: OLD-BINANCEUS-SECRET
      options: {enableRateLimit: true, defaultType: spot, tradesLimit: 1, bulk_batch_size: 5}
      channels:
        watchTicker: [BTC/USD, ETH/USD, SOL/USD]
        watchTrades: [BTC/USD, ETH/USD, SOL/USD]
        watchOrderBook: [BTC/USD, ETH/USD]
        watchOHLCV: [BTC/USD]
    coinbaseadvanced:
      max_orderbook_depth: 20
      api_key: ""
      api_secret: ""
      channels:
        watchTicker: [BTC/USDC]
        watchTrades: [BTC/USDC]
        watchOrderBook: [BTC/USDC]
    kraken:
      max_orderbook_depth: 5000
      password: OLD-KRAKEN-PASSWORD
      channels:
        watchTrades: [BTC/USD, ETH/USD]
        watchOrderBook: [BTC/USD, ETH/USD]
ingestion:
  batch_size: 100
  flush_interval_seconds: 5.0
  queue_maxsize: 5000
  enable_fsync: true
  auto_reconnect: true
  max_reconnect_attempts: 100000
  reconnect_delay: 5.0
  segment_max_mb: 50
  raw_format: parquet
  parquet_compression: zstd
  parquet_compression_level: 4
  partition_by: [exchange, symbol, year, month, day, hour]
etl:
  compression: zstd
  schedule_cron: null
  delete_after_processing: true
  state: {enabled: true, checkpoint_interval_seconds: 300}
  channels:
    ticker: {partition_cols: [exchange, symbol, date], processor_options: {add_derived_fields: true}}
    orderbook:
      partition_cols: [exchange, symbol, date]
      processor_options:
        compute_features: true
        max_levels: 20
        hf_sample_interval: 2.0
        ofi_levels: 10
        spread_tight_percentile: 0.2
        spread_wide_percentile: 0.8
        tight_spread_threshold: 0.0001
features:
  categories: [structural, dynamic, rolling, advanced]
  depth_levels: 20
  ofi_levels: 10
  bands_bps: [5, 10, 25, 50, 100]
  rolling_windows: [5, 15, 60, 300, 900]
  bar_interval_seconds: 60
  bar_durations: [60, 300, 900, 3600]
  ofi_decay_alpha: 0.5
  kyle_lambda_window: 300
  enable_vpin: true
  vpin_bucket_size: 1.0
  vpin_window_buckets: 50
  use_dynamic_spread_regime: true
  spread_regime_window: 300
  spread_tight_percentile: 0.2
  spread_wide_percentile: 0.8
  spread_tight_threshold_bps: 5.0
  spread_wide_threshold_bps: 20.0
  enable_stateful: true
  drop_raw_book_arrays: true
log_level: INFO
log_format: "%(asctime)s - %(message)s"
"""
OLD_SECRETS = ("AKIA-OLD-S3-ID", "OLD-S3-SECRET-VALUE", "OLD-CB-NATIVE-KEY", "OLD-CB-NATIVE-PEM",
               "OLD-BINANCEUS-KEY", "OLD-BINANCEUS-SECRET", "OLD-KRAKEN-PASSWORD")


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fluxforge", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def _leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


def test_realistic_config_translates_and_passes_config_check(tmp_path, monkeypatch):
    old = tmp_path / "old.yaml"
    old.write_text(OLD_YAML)
    r = _cli("config", "import-daedalus", str(old))
    assert r.returncode == 0, r.stderr
    for secret in OLD_SECRETS:  # never copied, neither into the config nor onto the terminal
        assert secret not in r.stdout and secret not in r.stderr
    new = tmp_path / "config.yaml"
    new.write_text(r.stdout)

    # The credential files the instructions name, with the old values: then `config check` passes.
    creds = tmp_path / "creds"
    creds.mkdir()
    data = yaml.safe_load(OLD_YAML)
    named = re.findall(r"^credential: put the value of (\S+) \(from the old file\) into "
                       r"/etc/fluxforge/credentials/(\S+) ", r.stderr, re.M)
    assert len(named) == 7, r.stderr
    for old_key, file in named:
        value = dict(_leaves(data))[old_key]
        (creds / f"fluxforge_{file}").write_text(value)
    ok = _cli("config", "check", "--config", str(new), env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert ok.returncode == 0, ok.stderr
    assert "OLD-BINANCEUS-SECRET" not in ok.stdout  # masked as a referenced value
    # Without the files the check fails naming the packaged file to create (exit 78, no traceback).
    bad = _cli("config", "check", "--config", str(new), env={"CREDENTIALS_DIRECTORY": str(tmp_path / "none")})
    assert bad.returncode == 78 and "/etc/fluxforge/credentials/" in bad.stderr and "Traceback" not in bad.stderr

    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = parse_config(yaml.safe_load(r.stdout))
    ex = {x.name: x for x in cfg.exchanges}
    assert list(ex) == ["binanceus", "coinbase", "kraken"]          # coinbaseadvanced is ccxt.pro coinbase
    assert ex["binanceus"].ccxt == {"apiKey": "OLD-BINANCEUS-KEY", "secret": "OLD-BINANCEUS-SECRET",
                                    "enableRateLimit": True, "options": {"defaultType": "spot"}}
    assert ex["binanceus"].symbols == ["BTC/USD", "ETH/USD", "SOL/USD"] and ex["binanceus"].book_depth == 50
    assert ex["binanceus"].channel_symbols()["ohlcv"] == ["BTC/USD"] and ex["binanceus"].ohlcv_timeframes == ["1m"]
    assert ex["coinbase"].symbols == ["BTC/USDC", "BTC/USD", "ETH/USD"]   # ccxt entry + native products
    assert ex["coinbase"].ccxt["apiKey"] == "organizations/abc/apiKeys/OLD-CB-NATIVE-KEY"
    assert "OLD-CB-NATIVE-PEM" in ex["coinbase"].ccxt["secret"]
    assert ex["kraken"].channels == ["orderbook", "trades"] and ex["kraken"].book_depth == 1000
    assert ex["kraken"].ccxt == {"password": "OLD-KRAKEN-PASSWORD"}
    f = cfg.etl.features
    assert (f.max_levels, f.hf_emit_interval, f.spread_tight_percentile, f.spread_wide_percentile) == (20, 2.0, 20, 80)
    assert f.horizons == [5, 15, 60, 300, 900] and f.tight_spread_threshold == pytest.approx(5e-4)
    assert f.keep_raw_arrays is False and f.vpin_bucket_volume == 1.0
    assert (cfg.sync.enabled, cfg.sync.bucket, cfg.sync.endpoint_url, cfg.sync.workers) == (
        True, "market-data-vault", "http://minio:9000", 8)
    assert cfg.sync.aws_secret_access_key == "OLD-S3-SECRET-VALUE" and cfg.sync.delete_after_upload
    assert cfg.collector.flush_interval == 5.0 and cfg.collector.queue_max == 5000


def test_every_old_key_is_translated_or_warned():
    """Nothing is dropped silently: each non-empty leaf of the old file is in the provenance or a warning."""
    tr = translate(yaml.safe_load(OLD_YAML))
    seen = [old for old, _, _ in tr.mapped] + [old for old, _ in tr.warnings]
    missing = [key for key, value in _leaves(yaml.safe_load(OLD_YAML))
               if value not in (None, "") and not any(key == s or key.startswith(s + ".") for s in seen)
               and not key.startswith("coinbase.channels")]  # values, not keys: checked below
    assert not missing
    text = render(tr, "old.yaml", "Daedalus")
    for old_key, message in tr.warnings:  # the YAML carries the warnings as comments too
        assert f"#   {old_key}: {message}" in text


WARNINGS = [  # (old config, the old key warned about, a phrase of what to do instead)
    ({"ingestion": {"batch_size": 100}}, "ingestion.batch_size", "flush_interval"),
    ({"ingestion": {"raw_format": "ndjson"}}, "ingestion.raw_format", "fluxforge import daedalus"),
    ({"ingestion": {"parquet_compression": "snappy"}}, "ingestion.parquet_compression", "zstd"),
    ({"ingestion": {"parquet_compression_level": 9}}, "ingestion.parquet_compression_level", "zstd"),
    ({"ingestion": {"partition_by": ["exchange"]}}, "ingestion.partition_by", "exchange/symbol/date"),
    ({"ingestion": {"enable_fsync": False}}, "ingestion.enable_fsync", "always fsyncs"),
    ({"ingestion": {"auto_reconnect": False}}, "ingestion.auto_reconnect", "always reconnects"),
    ({"ingestion": {"max_reconnect_attempts": 10}}, "ingestion.max_reconnect_attempts", "never stops"),
    ({"ingestion": {"output_dir": "./data/raw"}}, "ingestion.output_dir", "data_dir"),
    ({"etl": {"compression": "snappy"}}, "etl.compression", "zstd"),
    ({"etl": {"schedule_cron": "0 * * * *"}}, "etl.schedule_cron", "no schedule"),
    ({"etl": {"delete_after_processing": True}}, "etl.delete_after_processing", "retention"),
    ({"etl": {"state": {"max_state_files": 5}}}, "etl.state.max_state_files", "checkpoints"),
    ({"etl": {"channels": {"trades": {"partition_cols": ["date"]}}}}, "etl.channels.trades.partition_cols",
     "exchange=/symbol=/date="),
    ({"etl": {"channels": {"ticker": {"enabled": False}}}}, "etl.channels.ticker.enabled", "every channel"),
    ({"etl": {"channels": {"trades": {"processor_options": {"add_derived_fields": True}}}}},
     "etl.channels.trades.processor_options.add_derived_fields", "etl.trades"),
    ({"etl": {"channels": {"orderbook": {"processor_options": {"enable_stateful": False}}}}},
     "etl.channels.orderbook.processor_options.enable_stateful", "every feature family"),
    ({"etl": {"channels": {"orderbook": {"processor_options": {"max_state_staleness_seconds": 60}}}}},
     "etl.channels.orderbook.processor_options.max_state_staleness_seconds", "gap/resync/reconnect"),
    ({"etl": {"channels": {"orderbook": {"processor_options": {"vpin_bucket_count": 9}}}}},
     "etl.channels.orderbook.processor_options.vpin_bucket_count", "vpin_window_buckets"),
    ({"etl": {"channels": {"orderbook": {"processor_options": {"horizons": [5]}}}}, "features": {"rolling_windows": [9]}},
     "etl.channels.orderbook.processor_options.horizons", "superseded by features.rolling_windows"),
    ({"features": {"categories": ["structural"]}}, "features.categories", "every feature family"),
    ({"features": {"compute_features": False}}, "features.compute_features", "every feature family"),
    ({"features": {"bar_interval_seconds": 60}}, "features.bar_interval_seconds", "bar_durations"),
    ({"features": {"spread_tight_percentile": "low"}}, "features.spread_tight_percentile", "not a number"),
    ({"features": {"no_such_option": 1}}, "features.no_such_option", "not translated"),
    ({"ccxt": {"exchanges": {"binance": {"channels": {"watchMyTrades": ["BTC/USDT"], "watchTrades": ["BTC/USDT"]}}}}},
     "ccxt.exchanges.binance.channels.watchMyTrades", "no bronze channel"),
    # ohlcv / bid-ask where ccxt.pro cannot serve them (`fluxforge collect` would refuse the file): left out
    ({"ccxt": {"exchanges": {"coinbaseadvanced": {"channels": {"watchOHLCV": ["BTC/USD"], "watchTrades": ["BTC/USD"]}}}}},
     "ccxt.exchanges.coinbaseadvanced.channels.watchOHLCV", "has no watchOHLCV (has['watchOHLCV'] is false): not collected; candles of any length "
                                                            "are FluxForge's trade bars"),
    ({"ccxt": {"exchanges": {"coinbaseadvanced": {"channels": {"watchBidsAsks": ["BTC/USD"],
                                                               "watchTrades": ["BTC/USD"]}}}}},
     "ccxt.exchanges.coinbaseadvanced.channels.watchBidsAsks", "is false): not collected; the ticker channel"),
    ({"ccxt": {"exchanges": {"p2b": {"channels": {"watchOHLCV": ["BTC/USDT"], "watchTrades": ["BTC/USDT"]}}}}},
     "ccxt.exchanges.p2b.channels.watchOHLCV", "has no timeframe '15m' (it has 1m, 1h, 1d)"),
    ({"ccxt": {"exchanges": {"kraken": {"channels": {"watchOHLCV": [], "watchTrades": ["BTC/USD"]}}}}},
     "ccxt.exchanges.kraken.channels.watchOHLCV", "recorded nothing; list the symbols"),
    ({"ccxt": {"exchanges": {"kraken": {"channels": {"watchBidsAsks": [], "watchTrades": ["BTC/USD"]}}}}},
     "ccxt.exchanges.kraken.channels.watchBidsAsks", "list them under channels.bidsasks"),
    ({"ccxt": {"exchanges": {"binance": {"channels": {"watchTrades": ["A/B"]}, "options": {"tradesLimit": 1}}}}},
     "ccxt.exchanges.binance.options.tradesLimit", "queue_max_mb"),
    ({"ccxt": {"exchanges": {"binance": {"channels": {"watchTrades": ["A/B"]},
                                         "options": {"max_concurrent_subscriptions": 3}}}}},
     "ccxt.exchanges.binance.options.max_concurrent_subscriptions", "max_concurrent_snapshots"),
    ({"ccxt": {"exchanges": {"binance": {"channels": {"watchTrades": ["A/B"]}, "max_orderbook_depth": "deep"}}}},
     "ccxt.exchanges.binance.max_orderbook_depth", "not a positive whole number"),
    ({"ccxt": {"exchanges": {"nosuchexchange": {"channels": {"watchTrades": ["A/B"]}}}}},
     "ccxt.exchanges.nosuchexchange", "ccxt.pro has no exchange"),
    ({"ccxt": {"exchanges": {"coinbaseadvanced": {"channels": {"watchBidsAsks": ["A/B"]}, "api_key": "k"}}}},
     "ccxt.exchanges.coinbaseadvanced", "exchange not translated"),
    ({"coinbase": {"api_key": "", "product_ids": ["BTC-USD"]}}, "coinbase", "did not run"),
    ({"coinbase": {"api_key": "k", "api_secret": "s", "channels": ["candles", "level2"]}},
     "coinbase.channels.candles", "ccxt.pro 'coinbase' has no watchOHLCV"),
    ({"coinbase": {"api_key": "k", "api_secret": "s", "channels": ["status", "level2"]}},
     "coinbase.channels.status", "not collected"),
    ({"coinbase": {"api_key": "k", "api_secret": "s", "level2_batch_size": 5}}, "coinbase.level2_batch_size",
     "no equivalent"),
    ({"coinbase": {"api_key": "k", "product_ids": ["BTC-USD"]},
      "ccxt": {"exchanges": {"coinbase": {"api_key": "k2", "channels": {"watchTrades": ["BTC/USD"]}}}}},
     "coinbase.api_key", "already has its apiKey"),
    ({"storage": {"sync": {"interval_seconds": 60}}}, "storage.sync.interval_seconds", "fluxforge-sync.timer"),
    ({"storage": {"sync": {"paths": ["raw/"]}}}, "storage.sync.paths", "upload_bronze"),
    ({"storage": {"sync": {"compact_before_upload": True}}}, "storage.sync.compact_before_upload", "compact"),
    ({"storage": {"sync": {"source": {"backend": "local"}}}}, "storage.sync.source", "data_dir"),
    ({"storage": {"sync": {"destination": {"backend": "local", "base_dir": "/mnt"}}}}, "storage.sync.destination",
     "S3 only"),
    ({"storage": {"sync": {"destination": {"backend": "s3", "s3": {"bucket": "b", "aws_session_token": "t"}}}}},
     "storage.sync.destination.s3.aws_session_token", "standard chain"),
    ({"storage": {"sync": {"destination": {"backend": "s3", "s3": {"bucket": "b", "max_pool_connections": 50}}}}},
     "storage.sync.destination.s3.max_pool_connections", "sync.workers"),
    ({"storage": {"sync": {"destination": {"backend": "s3", "s3": {"bucket": "a"}}},
                  "etl_storage_output": {"backend": "s3", "s3": {"bucket": "b"}}}},
     "storage.etl_storage_output.s3.bucket", "one bucket"),
    ({"storage": {"ingestion_storage": {"backend": "local", "base_dir": "F:/"}}}, "storage.ingestion_storage.base_dir",
     "fluxforge import daedalus"),
    ({"storage": {"paths": {"tier_raw": "bronze"}}}, "storage.paths.tier_raw", "fixed"),
    ({"log_format": "%(message)s"}, "log_format", "structlog"),
    ({"log_level": "LOUD"}, "log_level", "not a log level"),
    ({"grafana": {"x": 1}}, "grafana", "not translated"),
]


@pytest.mark.parametrize("old, key, phrase", WARNINGS, ids=[w[1] for w in WARNINGS])
def test_each_key_without_equivalent_warns_with_what_to_do(old, key, phrase):
    tr = translate(old)
    hits = [message for k, message in tr.warnings if k == key]
    assert hits and any(phrase in m for m in hits), tr.warnings


def test_per_method_symbol_lists_become_per_channel_lists():
    old = {"ccxt": {"exchanges": {"binance": {"channels": {"watchTradesForSymbols": ["BTC/USDT", "ETH/USDT"],
                                                           "watchOrderBook": ["BTC/USDT"]}}}}}
    tr = translate(old)
    assert not tr.warnings
    x = parse_config(yaml.safe_load(render(tr, "old.yaml", "Daedalus"))).exchanges[0]
    assert x.channel_symbols() == {"orderbook": ["BTC/USDT"], "trades": ["BTC/USDT", "ETH/USDT"]}
    same = translate({"ccxt": {"exchanges": {"okx": {"channels": {"watchTrades": ["A/B"], "watchTicker": ["A/B"]}}}}})
    assert same.config["exchanges"][0]["symbols"] == ["A/B"]
    assert same.config["exchanges"][0]["channels"] == ["trades", "ticker"]


def _collect_refuses(x) -> dict:
    """What `fluxforge collect` would refuse in this entry (its own check, on the real ccxt.pro class)."""
    import ccxt.pro

    from fluxforge.collector.channel_support import channel_problems
    return channel_problems(getattr(ccxt.pro, x.name)(), list(x.channels), x.ohlcv_timeframes)


def test_ohlcv_and_bidask_methods_become_the_ohlcv_and_bidsasks_channels():
    """watchOHLCV / watchOHLCVForSymbols / watchBidsAsks are collected, each for its own symbols, candles
    at the timeframe Daedalus really asked for (ccxt's watch_ohlcv default: it passed none)."""
    old = {"ccxt": {"exchanges": {
        "binance": {"channels": {"watchOHLCV": ["BTC/USDT"], "watchOHLCVForSymbols": ["ETH/USDT"],
                                 "watchBidsAsks": ["BTC/USDT", "SOL/USDT"], "watchTrades": ["BTC/USDT"]}},
        "upbit": {"channels": {"watchOHLCV": ["BTC/KRW"], "watchTrades": ["BTC/KRW"]}}}}}
    tr = translate(old)
    assert tr.warnings == []
    text = render(tr, "old.yaml", "Daedalus")
    binance, upbit = parse_config(yaml.safe_load(text)).exchanges
    assert binance.channel_symbols() == {"trades": ["BTC/USDT"], "ohlcv": ["BTC/USDT", "ETH/USDT"],
                                         "bidsasks": ["BTC/USDT", "SOL/USDT"]}
    assert binance.ohlcv_timeframes == ["1m"]
    assert upbit.ohlcv_timeframes == ["1s"] and upbit.channel_symbols()["ohlcv"] == ["BTC/KRW"]
    assert _collect_refuses(binance) == {} and _collect_refuses(upbit) == {}
    assert "#   ccxt.exchanges.binance.channels.watchBidsAsks -> exchanges.0.channels.bidsasks" in text
    notes = dict(re.findall(r"^#   (\S+) -> \S+ohlcv_timeframes  \((.*)\)$", text, re.M))
    assert notes["ccxt.exchanges.upbit.channels.watchOHLCV"].startswith("1s: ccxt's watch_ohlcv default on upbit")
    # Daedalus's _bulk_loop awaited watchOHLCVForSymbols and wrote nothing: said where that applies
    assert "recorded no candles here" in notes["ccxt.exchanges.binance.channels.watchOHLCV"]
    assert "recorded no candles" not in notes["ccxt.exchanges.upbit.channels.watchOHLCV"]


def test_what_ccxt_pro_cannot_serve_is_left_out_so_collect_accepts_the_file():
    old = {"ccxt": {"exchanges": {"coinbaseadvanced": {"channels": {"watchOHLCV": ["BTC/USD"], "watchBidsAsks": ["BTC/USD"],
                                                                    "watchTrades": ["BTC/USD"]}},
                                  "p2b": {"channels": {"watchOHLCV": ["BTC/USDT"], "watchTicker": ["BTC/USDT"]}}}},
           "coinbase": {"api_key": "k", "product_ids": ["ETH-USD"], "channels": ["candles", "market_trades"]}}
    tr = translate(old)
    warned = {k for k, _ in tr.warnings}
    assert warned == {"ccxt.exchanges.coinbaseadvanced.channels.watchOHLCV", "coinbase.channels.candles",
                      "ccxt.exchanges.coinbaseadvanced.channels.watchBidsAsks", "ccxt.exchanges.p2b.channels.watchOHLCV"}
    coinbase, p2b = parse_config(yaml.safe_load(render(tr, "old.yaml", "Daedalus")), secrets=False).exchanges
    assert coinbase.channel_symbols() == {"trades": ["BTC/USD", "ETH/USD"]} and p2b.channel_symbols() == {
        "ticker": ["BTC/USDT"]}
    assert _collect_refuses(coinbase) == {} and _collect_refuses(p2b) == {}


def test_an_exchange_left_out_leaves_no_credential_behind():
    tr = translate({"ccxt": {"exchanges": {"coinbaseadvanced": {"api_key": "k", "channels": {"watchOHLCV": ["A/B"]}}}}})
    assert "exchanges" not in tr.config and tr.credentials == []
    assert "credential" not in render(tr, "old.yaml", "Daedalus")


def test_settings_fluxforge_always_has_do_not_warn():
    tr = translate({"ingestion": {"enable_fsync": True, "auto_reconnect": True, "max_reconnect_attempts": -1},
                    "etl": {"compression": "zstd", "schedule_cron": None, "delete_after_processing": False}})
    assert tr.warnings == []
    assert sum(1 for _, new, _ in tr.mapped if new == "(built in)") == 6


def test_warnings_go_to_stderr_and_the_config_alone_to_stdout(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("ingestion: {batch_size: 10}\nfeatures: {spread_tight_percentile: 0.1}\n")
    r = _cli("config", "import-daedalus", str(old))
    assert r.returncode == 0
    assert "warning: ingestion.batch_size: " in r.stderr
    assert yaml.safe_load(r.stdout) == {"etl": {"features": {"spread_tight_percentile": 10.0}}}


@pytest.mark.parametrize("text, needle", [("ingestion: [\n", "invalid YAML"), ("- a\n", "mapping at the top level"),
                                          ("# caf\u00e9, saved as Latin-1\n", "not UTF-8 text"),
                                          ("features: {rolling_windows: [-5]}\n",
                                           "etl.features.horizons: Value error, must be positive")])
def test_unusable_old_files_are_one_clear_line(tmp_path, text, needle):
    old = tmp_path / "old.yaml"
    old.write_text(text, encoding="latin-1" if "Latin-1" in text else "utf-8")
    r = _cli("config", "import-daedalus", str(old))
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr and r.stdout == ""
    if "horizons" in needle:
        assert "(from features.rolling_windows)" in r.stderr
    missing = _cli("config", "import-daedalus", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@pytest.mark.parametrize("value, meant", [(0.2, "20"), (0.25, "25"), (0.999, "99.9"), (0.05, "5")])
@pytest.mark.parametrize("field", ["spread_tight_percentile", "spread_wide_percentile"])
def test_strict_loader_refuses_percentile_fractions(field, value, meant):
    other = {"spread_tight_percentile": 0, "spread_wide_percentile": 100}
    with pytest.raises(ConfigError, match=re.escape(f"etl.features.{field}: Value error, percent, 0-100: "
                                                    f"did you mean {meant}?")):
        parse_config({"etl": {"features": {**other, field: value}}})


def test_strict_loader_takes_percent_including_0_and_1():
    cfg = parse_config({"etl": {"features": {"spread_tight_percentile": 0, "spread_wide_percentile": 1}}})
    assert (cfg.etl.features.spread_tight_percentile, cfg.etl.features.spread_wide_percentile) == (0, 1)


def test_config_check_names_the_fraction_and_exits_78(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("etl:\n  features:\n    spread_wide_percentile: 0.8\n")
    r = _cli("config", "check", "--config", str(bad))
    assert r.returncode == 78 and "did you mean 80?" in r.stderr


# --- every row of the doc's option table, translated and read back through the strict loader ---

SAMPLES = {  # a valid non-default FluxForge value per target option
    "etl.features.max_levels": 20, "etl.features.ofi_levels": 7, "etl.features.ofi_decay_alpha": 0.5,
    "etl.features.bands_bps": [5.0, 10.0, 20.0], "etl.features.horizons": [5.0, 15.0, 900.0],
    "etl.features.bar_durations": [60, 300], "etl.features.hf_emit_interval": 2.5,
    "etl.features.keep_raw_arrays": True, "etl.features.tight_spread_threshold": 0.0003,
    "etl.features.wide_spread_threshold": 0.002, "etl.features.use_dynamic_spread_regime": False,
    "etl.features.spread_regime_window": 120.0, "etl.features.spread_tight_percentile": 20.0,
    "etl.features.spread_wide_percentile": 80.0, "etl.features.kyle_lambda_window": 300.0,
    "etl.features.enable_vpin": False, "etl.features.vpin_bucket_volume": 2.5,
    "etl.features.vpin_window_buckets": 20, "collector.flush_interval": 5.0, "collector.queue_max": 5000,
    "collector.reconnect_backoff_initial": 5.0, "collector.segment_max_mb": 50.0, "sync.enabled": True,
    "sync.delete_after_upload": True, "sync.workers": 8, "compaction.target_file_mb": 100.0,
    "sync.bucket": "vault", "sync.region": "eu-west-1", "sync.endpoint_url": "http://minio:9000",
    "logging.level": "DEBUG",
}
INVERSE = {"same": lambda v: v, "fraction → percent": lambda v: v / 100, "bps → decimal": lambda v: v * 1e4,
           "negated": lambda v: not v}
ROW = re.compile(r"^\| `([a-z0-9_.<>]+)` \| `([a-z_.]+)` \| (same|fraction → percent|bps → decimal|negated) \|", re.M)


def _doc_rows():
    return ROW.findall(DOC.read_text())


def test_the_doc_table_covers_every_translation_rule():
    from fluxforge.migrate.daedalus_features import FEATURES, PROCESSOR_OPTIONS
    from fluxforge.migrate.daedalus_config import INGESTION
    documented = {old for old, _, _ in _doc_rows()}
    rules = ({f"features.{k}" for k in FEATURES}
             | {f"etl.channels.orderbook.processor_options.{k}" for k in PROCESSOR_OPTIONS}
             | {f"ingestion.{k}" for k in INGESTION})
    assert rules <= documented, sorted(rules - documented)
    assert len(_doc_rows()) >= 50, len(_doc_rows())


@pytest.mark.parametrize("old_key, new_key, conversion", _doc_rows(), ids=[r[0] for r in _doc_rows()])
def test_documented_mapping_round_trips(old_key, new_key, conversion):
    want = SAMPLES[new_key]
    value = INVERSE[conversion](want)
    if old_key.startswith("storage.sync.destination.s3."):
        old = _nested("storage.sync.destination", {"backend": "s3", "s3": {"bucket": "vault", old_key.rsplit(".", 1)[1]: value}})
    elif old_key.startswith("storage.<layer>.s3."):
        old = {"storage": {"etl_storage_output": {"backend": "s3", "s3": {"bucket": "vault",
                                                                          old_key.rsplit(".", 1)[1]: value}}}}
    else:
        old = _nested(old_key, value)
    if old_key.startswith("storage.sync.") and "destination" not in old_key:  # enabled sync needs a bucket
        old["storage"]["sync"]["destination"] = {"backend": "s3", "s3": {"bucket": "vault"}}
    text = render(translate(old), "old.yaml", "Daedalus")
    cfg = parse_config(yaml.safe_load(text))
    node = cfg
    for part in new_key.split("."):
        node = getattr(node, part)
    assert node == pytest.approx(want) if isinstance(want, float) else node == want
    assert f"#   {old_key.replace('<layer>', 'etl_storage_output')} -> {new_key}" in text
