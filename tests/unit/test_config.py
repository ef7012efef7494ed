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
            if field in ("features", "trades"):
                continue
            assert f"{field}:" in text, f"{section}.{field} missing from example config"
    for field in type(cfg.etl.features).model_fields:
        assert f"{field}:" in text, f"etl.features.{field} missing from example config"
    live = text[text.index("\n  live:"):text.index("\n  features:")]
    for field in type(cfg.etl.live).model_fields:
        assert f"\n    {field}:" in live, f"etl.live.{field} missing from example config"
    trades = text[text.index("\n  trades:"):text.index("\n  features:")]
    for field in type(cfg.etl.trades).model_fields:
        assert f"\n    {field}:" in trades, f"etl.trades.{field} missing from example config"


@pytest.mark.parametrize("data, needle", [
    ({"collector": {"flush_intervall": 1}}, "collector.flush_intervall: unknown key"),
    ({"collector": {"flush_interval": -1}}, "collector.flush_interval"),
    ({"exchanges": [{"name": "binance", "symbols": ["BTCUSDT"]}]}, "exchanges.0.symbols"),
    ({"exchanges": [{"name": "binance", "symbols": ["BTC/USDT"], "channels": ["book"]}]}, "exchanges.0.channels: Value error, 'book' is not a channel"),
    ({"etl": {"features": {"ofi_levels": 20, "max_levels": 10}}}, "etl.features"),
    ({"etl": {"features": {"horizons": [5, 1]}}}, "etl.features.horizons"),
    ({"sync": {"enabled": True}}, "bucket is required"),
    ({"etl": {"trades": {"dollar_bar_size": -1}}}, "etl.trades.dollar_bar_size"),
    ({"etl": {"symbol_overrides": {"BTC/USDT": {"volume_bar_size": 1}}}}, "exchange:SYMBOL"),
    ({"etl": {"symbol_overrides": {"binance:BTC/USDT": {"volume_bar_sise": 1}}}}, "volume_bar_sise"),
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


def _float_fields(model, prefix=""):
    """Every float (or list of floats) field of the config tree, as dotted paths."""
    from pydantic import BaseModel
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _float_fields(value, f"{prefix}{name}.")
        elif isinstance(value, float) or (isinstance(value, list) and value and isinstance(value[0], float)):
            yield f"{prefix}{name}", isinstance(value, list)


def _nested(path: str, value) -> dict:
    out: dict = {}
    node = out
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


FLOAT_FIELDS = sorted(_float_fields(parse_config({})))


@pytest.mark.parametrize("path, is_list", FLOAT_FIELDS, ids=[p for p, _ in FLOAT_FIELDS])
@pytest.mark.parametrize("bad", [".inf", "-.inf", ".nan"])
def test_non_finite_floats_are_config_errors_naming_the_field(path, is_list, bad):
    value = yaml.safe_load(bad)
    with pytest.raises(ConfigError) as e:
        parse_config(_nested(path, [value] if is_list else value), "t.yaml")
    assert path in str(e.value) and e.value.exit_code == 78


@pytest.mark.parametrize("data, needle", [
    ({"collector": {"segment_max_seconds": 1e9}}, "collector.segment_max_seconds: Input should be less than or equal"),
    ({"collector": {"stall_timeout": 1e12}}, "collector.stall_timeout"),
    ({"collector": {"queue_max": 10**12}}, "collector.queue_max"),
    ({"sync": {"multipart_chunk_mb": 1e6}}, "sync.multipart_chunk_mb"),
    ({"sync": {"read_timeout": 1e9}}, "sync.read_timeout"),
    ({"etl": {"features": {"horizons": [1, 1e9]}}}, "etl.features.horizons"),
    ({"etl": {"features": {"vpin_window_buckets": 10**9}}}, "etl.features.vpin_window_buckets"),
])
def test_values_with_a_sensible_ceiling_are_bounded(data, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        parse_config(data, "t.yaml")


def test_config_check_rejects_inf_with_exit_78_not_a_crash(tmp_path):
    bad = tmp_path / "inf.yaml"
    bad.write_text("collector:\n  segment_max_mb: .inf\n")
    r = _cli("config", "check", "--config", str(bad))
    assert r.returncode == 78, r.stderr
    assert "collector.segment_max_mb" in r.stderr and "finite" in r.stderr and "Traceback" not in r.stderr


def test_every_referenced_value_and_unknown_secret_keys_are_masked(tmp_path, monkeypatch):
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "fluxforge_okx_twofa").write_text("TWOFA-SEED\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    monkeypatch.setenv("FF_WEIRD", "REFERENCED-BUT-KEY-LOOKS-HARMLESS")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "exchanges": [{"name": "okx", "symbols": ["BTC/USDT"], "ccxt": {
            "twofa": "${credential:fluxforge_okx_twofa}", "login": "LOGIN-NAME-SECRET",
            "headers": {"Authorization": "Bearer HEADER-SECRET"},
            "options": {"brokerId": "${env:FF_WEIRD}"},
            "urls": {"api": {"rest": "https://apiuser:URL-PASSWORD@okx.example/api"}}}}],
        "sync": {"endpoint_url": "http://minio:ENDPOINT-PASSWORD@127.0.0.1:9000", "bucket": "b"},
    }))
    r = _cli("config", "check", "--config", str(cfg), env={**__import__("os").environ})
    assert r.returncode == 0, r.stderr
    for secret in ("TWOFA-SEED", "LOGIN-NAME-SECRET", "HEADER-SECRET", "REFERENCED-BUT-KEY-LOOKS-HARMLESS",
                   "URL-PASSWORD", "ENDPOINT-PASSWORD", "apiuser", "minio:"):
        assert secret not in r.stdout, secret
    dumped = yaml.safe_load(r.stdout)
    assert dumped["sync"]["endpoint_url"] == "http://***@127.0.0.1:9000"
    assert dumped["exchanges"][0]["ccxt"]["options"]["brokerId"] == "***"
    assert dumped["exchanges"][0]["ccxt"]["urls"]["api"]["rest"] == "https://***@okx.example/api"


def test_logs_mask_url_userinfo(capsys):
    import structlog
    from fluxforge.logs import configure_logging, get_logger
    configure_logging("INFO", "json")
    try:
        get_logger("t").info("sync_started", endpoint="http://key:LOG-SECRET@minio:9000",
                             detail=ValueError("could not reach https://u:EXC-SECRET@h/x"))
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "LOG-SECRET" not in err and "EXC-SECRET" not in err
    assert "http://***@minio:9000" in err


def test_credential_names_match_what_the_packaged_units_load():
    """LoadCredential=fluxforge:/etc/fluxforge/credentials names each file fluxforge_<file>: every
    reference shown to an operator must carry that prefix."""
    import re
    # Every unit that reads the config; fluxforge-firstboot (root, writes /etc/fluxforge/credentials) and
    # fluxforge-revive (root, reads no config: it asks systemd to start units) load none.
    units = [u for u in (REPO / "systemd").glob("*.service") if "--config /etc/fluxforge/config.yaml" in u.read_text()]
    assert {u.name for u in units} == {"fluxforge-collector.service", "fluxforge-etl.service",
                                       "fluxforge-compact.service", "fluxforge-sync.service"}
    assert all("LoadCredential=fluxforge:/etc/fluxforge/credentials" in u.read_text() for u in units)
    texts = [EXAMPLE, REPO / "docs/operations.md", REPO / "docs/sync.md", REPO / "docs/appliance.md",
             REPO / "fluxforge/sync/client.py", *REPO.glob("ansible/inventories/*/group_vars/*.yml")]
    for path in texts:
        for name in re.findall(r"\$\{credential:([A-Za-z0-9_.<>\-]+)\}", path.read_text()):
            assert name.startswith("fluxforge_") or name in ("NAME", ".."), f"{path.name}: ${{credential:{name}}}"


def test_unreadable_credential_error_names_the_packaged_file(tmp_path, monkeypatch):
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "fluxforge_s3_secret").write_text("x")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    with pytest.raises(ConfigError) as e:
        parse_config({"sync": {"aws_secret_access_key": "${credential:s3_secret}"}})
    assert '"${credential:fluxforge_s3_secret}"' in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config({"sync": {"aws_secret_access_key": "${credential:fluxforge_missing}"}})
    assert "/etc/fluxforge/credentials/missing" in str(e.value)


def test_config_file_encodings(tmp_path, monkeypatch):
    """YAML's encoding rule: UTF-8, or UTF-16 with a BOM (what some Windows editors save on the boot
    partition) reads the same; any other bytes are one config error line (exit 78), not a traceback."""
    text = f"data_dir: {tmp_path / 'data'}\nhost_id: pi01\n# caf\u00e9\n"
    (tmp_path / "utf8.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "utf16.yaml").write_text(text, encoding="utf-16")  # BOM first
    assert load_config(tmp_path / "utf16.yaml") == load_config(tmp_path / "utf8.yaml")
    (tmp_path / "latin1.yaml").write_text(text, encoding="latin-1")
    run = subprocess.run([sys.executable, "-m", "fluxforge", "config", "check", "--config", str(tmp_path / "latin1.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 78 and "Traceback" not in run.stderr
    assert "latin1.yaml: not UTF-8 text (byte 0xe9 at offset" in run.stderr and "save it as UTF-8" in run.stderr
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "fluxforge_s3_secret").write_bytes(b"\x00\xffbinary")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    with pytest.raises(ConfigError, match="credential 'fluxforge_s3_secret' is not UTF-8 text"):
        parse_config({"sync": {"aws_secret_access_key": "${credential:fluxforge_s3_secret}"}})


def test_unreachable_endpoint_error_line_masks_userinfo(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "host_id": "h", "logging": {"format": "json"},
        "sync": {"enabled": True, "bucket": "b", "endpoint_url": f"http://minio:EP-SECRET@127.0.0.1:{port}",
                 "region": "us-east-1", "aws_access_key_id": "k", "aws_secret_access_key": "s",
                 "require_time_sync": False, "max_attempts": 1, "connect_timeout": 2}}))
    r = _cli("sync", "--config", str(cfg))
    assert r.returncode == 1 and "cannot reach S3 endpoint" in r.stderr, r.stderr
    assert "EP-SECRET" not in r.stderr and "EP-SECRET" not in r.stdout
