"""Sync waits for timesyncd's flag on a systemd host, then skips cleanly instead of failing on signatures."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from syncdata import fresh_logging  # noqa: E402,F401

from fluxforge.cli import main  # noqa: E402
from fluxforge.sync import timesync  # noqa: E402


def gate(monkeypatch, tmp_path, systemd=True, timesyncd=True):
    run = tmp_path / "run"
    (run / "systemd" / "system").mkdir(parents=True)
    binary = tmp_path / "systemd-timesyncd"
    if timesyncd:
        binary.write_text("")
    monkeypatch.setattr(timesync, "SYSTEMD_RUNTIME", run / "systemd" / "system" if systemd else tmp_path / "absent")
    monkeypatch.setattr(timesync, "TIMESYNCD_BINARIES", (binary,))
    flag = run / "systemd" / "timesync" / "synchronized"
    monkeypatch.setattr(timesync, "SYNCHRONIZED_FLAG", flag)
    return flag


def test_hosts_without_timesyncd_are_not_gated(monkeypatch, tmp_path):
    gate(monkeypatch, tmp_path, timesyncd=False)
    assert timesync.wait_for_clock(0) is True
    gate(monkeypatch, tmp_path / "b", systemd=False)
    assert timesync.wait_for_clock(0) is True


def test_waits_for_the_flag(monkeypatch, tmp_path):
    flag = gate(monkeypatch, tmp_path)
    assert timesync.wait_for_clock(0.3, poll=0.05) is False

    def synchronise():
        time.sleep(0.3)
        flag.parent.mkdir(parents=True)
        flag.write_text("")

    threading.Thread(target=synchronise).start()
    assert timesync.wait_for_clock(30, poll=0.05) is True


def test_sync_skips_with_a_clear_line_when_clock_unsynchronised(monkeypatch, tmp_path, capsys):
    gate(monkeypatch, tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "logging": {"format": "json"},
        # port 9 (discard) would fail loudly if sync tried to talk to S3
        "sync": {"enabled": True, "bucket": "b", "endpoint_url": "http://127.0.0.1:9", "time_sync_wait": 0.2,
                 "aws_access_key_id": "k", "aws_secret_access_key": "s"}}))
    assert main(["sync", "-c", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "sync_skipped_clock_unsynchronised" in err and "sync_started" not in err
