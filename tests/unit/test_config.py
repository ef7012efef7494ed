"""Config validation: errors name the field path; secrets come from env/credentials and are masked."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fluxforge.config import ConfigError, load_config, masked_dump, parse_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "config.example.yaml"


def test_example_config_is_valid_and_complete():
    cfg = load_config(EXAMPLE)
    assert cfg.exchanges[0].name == "binance"
    # Every option of every section appears in the example (documented with a comment).
    text = EXAMPLE.read_text()
    for section in ("collector", "etl", "compaction", "sync", "retention", "metrics", "logging"):
        model = getattr(cfg, section)
        for field in type(model).model_fields:
            if field == "features":
                continue
            assert f"{field}:" in text, f"{section}.{field} missing from example config"
    for field in type(cfg.etl.features).model_fields:
        assert f"{field}:" in text, f"etl.features.{field} missing from example config"


@pytest.mark.parametrize("data, needle", [
    ({"collector": {"flush_intervall": 1}}, "collector.flush_intervall: unknown key"),
    ({"collector": {"flush_interval": -1}}, "collector.flush_interval"),
    ({"exchanges": [{"name": "binance", "symbols": ["BTCUSDT"]}]}, "exchanges.0.symbols"),
    ({"exchanges": [{"name": "binance", "symbols": ["BTC/USDT"], "channels": ["book"]}]}, "exchanges.0.channels.0"),
    ({"etl": {"features": {"ofi_levels": 20, "max_levels": 10}}}, "etl.features"),
    ({"etl": {"features": {"horizons": [5, 1]}}}, "etl.features.horizons"),
    ({"sync": {"enabled": True}}, "bucket is required"),
    ({"host_id": "my-host"}, "host_id"),
    ([1, 2], "top level must be a mapping"),
])
def test_errors_name_the_field(data, needle):
    with pytest.raises(ConfigError) as e:
        parse_config(data, "t.yaml")
    assert needle in str(e.value)
    assert e.value.exit_code == 78


def test_secrets_from_env_and_credentials(tmp_path, monkeypatch):
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "s3_secret").write_text("credsecret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    monkeypatch.setenv("BINANCE_KEY", "envkey")
    cfg = parse_config({
        "exchanges": [{"name": "binance", "symbols": ["BTC/USDT"], "ccxt": {"apiKey": "${env:BINANCE_KEY}", "secret": "plain"}}],
        "sync": {"aws_secret_access_key": "${credential:s3_secret}"},
    })
    assert cfg.exchanges[0].ccxt["apiKey"] == "envkey"
    assert cfg.sync.aws_secret_access_key == "credsecret"
    dumped = masked_dump(cfg)
    assert dumped["exchanges"][0]["ccxt"] == {"apiKey": "***", "secret": "***"}
    assert dumped["sync"]["aws_secret_access_key"] == "***"
    assert "envkey" not in yaml.safe_dump(dumped) and "credsecret" not in yaml.safe_dump(dumped)


def test_missing_env_reference_is_a_config_error(monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match="exchanges.0.ccxt.apiKey: environment variable NOPE_NOT_SET"):
        parse_config({"exchanges": [{"name": "x", "symbols": ["A/B"], "ccxt": {"apiKey": "${env:NOPE_NOT_SET}"}}]})


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fluxforge", *args], capture_output=True, text=True, env=env)


def test_config_check_cli_exit_codes(tmp_path):
    ok = _cli("config", "check", "--config", str(EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout and "flush_interval: 1.0" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("collector:\n  queue_max: nope\n")
    r = _cli("config", "check", "--config", str(bad))
    assert r.returncode == 78
    assert "collector.queue_max" in r.stderr and "Traceback" not in r.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("collector: [\n")
    r = _cli("config", "check", "--config", str(broken))
    assert r.returncode == 78 and "invalid YAML" in r.stderr
    r = _cli("config", "check", "--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 78 and "not found" in r.stderr
