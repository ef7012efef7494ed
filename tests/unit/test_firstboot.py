"""`fluxforge firstboot`'s import from the boot partition, on directories standing in for it and /etc.

Validation is the real `fluxforge config check` (a subprocess), so these tests fail if a
bad config gets installed, if the error file does not name the field, if secrets stay on
the FAT partition after a good import or leave it after a bad one, or if a second run
changes anything.  The unit wiring (services stay down) is tested in tests/appliance.
"""
from __future__ import annotations

import grp
import os
from pathlib import Path

import pytest
import yaml

from fluxforge.firstboot.boot_import import ERROR_FILE, HostPaths, find_source, run_import

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz6bI1n3ZTvYy0Yk0bq7Jd3m0Y6QeJb3sJ7mKqXh2Vx user@laptop"
# A group that exists on any Debian host, standing in for the package's `fluxforge` group.
GROUP = grp.getgrgid(os.getgid()).gr_name


def good_config() -> dict:
    return {"data_dir": "/var/lib/fluxforge", "host_id": "pi01",
            "exchanges": [{"name": "binance", "symbols": ["BTC/USDT"],
                           "ccxt": {"apiKey": "${credential:fluxforge_binance_key}"}}]}


@pytest.fixture
def boot(tmp_path) -> Path:
    src = tmp_path / "boot" / "fluxforge"
    (src / "credentials").mkdir(parents=True)
    (src / "config.yaml").write_text(yaml.safe_dump(good_config()))
    (src / "credentials" / "binance_key").write_text("secret-key\n")
    (src / "hostname").write_text("pi01\n")
    (src / "authorized_keys").write_text(f"# my laptop\n{KEY}\n")
    return src


@pytest.fixture
def host(tmp_path) -> HostPaths:
    return HostPaths(etc=tmp_path / "etc" / "fluxforge", hostname_file=tmp_path / "etc" / "hostname",
                     ssh_dir=tmp_path / "root" / ".ssh", group=GROUP, set_live_hostname=False)


def snapshot(root: Path) -> dict[str, tuple]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns, p.stat().st_ino)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_good_config_is_installed_and_secrets_leave_the_boot_partition(boot, host, tmp_path):
    out = run_import(boot, host)
    assert out.ok, out.errors
    config = host.etc / "config.yaml"
    assert yaml.safe_load(config.read_text()) == good_config()
    assert config.stat().st_mode & 0o777 == 0o640 and config.stat().st_gid == grp.getgrnam(GROUP).gr_gid
    cred = host.etc / "credentials" / "binance_key"
    assert cred.read_text() == "secret-key\n" and cred.stat().st_mode & 0o777 == 0o600
    assert not list((boot / "credentials").iterdir()), "the secret stayed on the FAT partition"
    assert (boot / "config.yaml").exists(), "the config stays on the card for the user to edit"
    assert not (boot / ERROR_FILE).exists()
    assert host.hostname_file.read_text() == "pi01\n"
    keys = host.ssh_dir / "authorized_keys"
    assert keys.read_text() == KEY + "\n" and keys.stat().st_mode & 0o777 == 0o600
    assert host.ssh_dir.stat().st_mode & 0o777 == 0o700

    before = snapshot(tmp_path)
    again = run_import(boot, host)
    assert again.ok, again.errors
    assert snapshot(tmp_path) == before, "a second run with the same files changed something"


def test_bad_config_writes_the_field_to_the_boot_partition_and_keeps_the_old_one(boot, host):
    (host.etc).mkdir(parents=True)
    (host.etc / "config.yaml").write_text("# the working config\n")
    cfg = good_config()
    cfg["collector"] = {"flush_intervall": 1.0}
    (boot / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = run_import(boot, host)
    assert not out.ok
    lines = (boot / ERROR_FILE).read_text().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("fluxforge/config.yaml: ") and "collector.flush_intervall: unknown key" in lines[0]
    assert "/tmp" not in lines[0], "the error names the staging copy instead of the card's file"
    assert (host.etc / "config.yaml").read_text() == "# the working config\n"
    assert (boot / "credentials" / "binance_key").exists(), "a failed import removed the user's secret"
    assert not (host.etc / "credentials" / "binance_key").exists()
    # SSH access and the host name do not wait for a valid config.
    assert host.hostname_file.read_text() == "pi01\n"
    assert (host.ssh_dir / "authorized_keys").read_text() == KEY + "\n"

    # Fixed on the laptop, next boot: installed, and the error file is gone.
    (boot / "config.yaml").write_text(yaml.safe_dump(good_config()))
    assert run_import(boot, host).ok
    assert not (boot / ERROR_FILE).exists()
    assert yaml.safe_load((host.etc / "config.yaml").read_text()) == good_config()


def test_a_missing_credential_is_named(boot, host):
    (boot / "credentials" / "binance_key").unlink()
    out = run_import(boot, host)
    assert not out.ok
    line = (boot / ERROR_FILE).read_text().splitlines()[0]
    assert "exchanges.0.ccxt.apiKey" in line and "fluxforge_binance_key" in line, line
    assert not (host.etc / "config.yaml").exists()


def test_credentials_imported_earlier_still_count(boot, host):
    assert run_import(boot, host).ok  # the key is now in /etc and gone from the card
    (boot / "config.yaml").write_text(yaml.safe_dump({**good_config(), "host_id": "pi02"}))
    assert run_import(boot, host).ok
    assert yaml.safe_load((host.etc / "config.yaml").read_text())["host_id"] == "pi02"


def test_bad_hostname_and_keys_are_reported_and_the_config_still_not_installed(boot, host):
    (boot / "hostname").write_text("my_pi!\n")
    (boot / "authorized_keys").write_text("not a key\n")
    out = run_import(boot, host)
    text = (boot / ERROR_FILE).read_text()
    assert "fluxforge/hostname: 'my_pi!' is not a valid host name" in text
    assert "fluxforge/authorized_keys line 1: not an SSH public key" in text
    assert not out.ok and not (host.etc / "config.yaml").exists()
    assert not host.hostname_file.exists() and not (host.ssh_dir / "authorized_keys").exists()


def test_authorized_keys_are_added_never_removed(boot, host):
    host.ssh_dir.mkdir(parents=True)
    other = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 admin@ops"
    (host.ssh_dir / "authorized_keys").write_text(other + "\n")
    assert run_import(boot, host).ok
    assert (host.ssh_dir / "authorized_keys").read_text() == f"{other}\n{KEY}\n"


def test_find_source_takes_the_first_boot_dir_with_a_config(tmp_path):
    pi, esp = tmp_path / "firmware", tmp_path / "efi"
    (esp / "fluxforge").mkdir(parents=True)
    (esp / "fluxforge" / "config.yaml").write_text("{}")
    (pi / "fluxforge").mkdir(parents=True)  # a folder without config.yaml does not count
    assert find_source([pi, esp]) == esp / "fluxforge"
    (esp / "fluxforge" / "config.yaml").unlink()
    assert find_source([pi, esp]) is None
