"""One writer per data_dir and service (issue 17 item 4, DESIGN decision 11).

A second `fluxforge collect` used to "recover" the live segment of the first
(whose later rows then went into unlinked files); a second `fluxforge etl`
could overwrite a newer checkpoint.  Each service now holds
`state/<service>.lock` for its lifetime; a second instance exits at once with
one line and exit 73, which the units list in RestartPreventExitStatus=.
"""
from __future__ import annotations

import signal
import subprocess
import time

import yaml

from etl_support import etl_config, fluxforge_cmd, synthetic_market, write_segments
from notify_listener import NotifyListener
from fluxforge.locks import EXIT_ALREADY_RUNNING, service_lock

from collector_support import subprocess_env


def _run(cmd, timeout=60):
    return subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def test_second_etl_exits_at_once_and_leaves_the_first_alone(tmp_path):
    data = tmp_path / "data"
    cfg = etl_config(tmp_path / "c.yaml", data)
    write_segments(data / "segments" / "ready", synthetic_market(seconds=20), 2, seconds=20)
    listener = NotifyListener(tmp_path / "notify.sock")
    first = subprocess.Popen(fluxforge_cmd("etl", "--config", str(cfg)), env=subprocess_env(NOTIFY_SOCKET=listener.path),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.wait_for("READY=1", 60), first.stderr.read() if first.poll() is not None else "no READY"
        second = _run(fluxforge_cmd("etl", "--once", "--config", str(cfg)))
        assert second.returncode == EXIT_ALREADY_RUNNING, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert "already running" in lines[0] and f"pid {first.pid}" in lines[0] and "etl.lock" in lines[0]
        assert first.poll() is None
        deadline = time.monotonic() + 60
        while len(list((data / "segments" / "done").iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(list((data / "segments" / "done").iterdir())) == 2
        assert not list((data / "segments" / "failed").iterdir())
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0
        listener.close()
    # the lock died with its holder: a new instance runs
    assert _run(fluxforge_cmd("etl", "--once", "--config", str(cfg))).returncode == 0


def test_second_collector_exits_without_touching_the_live_segment(tmp_path):
    data = tmp_path / "data"
    live = data / "segments" / "active" / "seg-test-20260101T000000Z-000001"
    live.mkdir(parents=True)
    (live / "trades.arrows").write_bytes(b"journal of the running collector")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(data), "host_id": "test", "logging": {"level": "INFO", "format": "json"},
        "exchanges": [{"name": "binance", "symbols": ["BTC/USDT"],
                       "ccxt": {"urls": {"api": {"ws": "ws://127.0.0.1:9", "public": "http://127.0.0.1:9"}}}}]}))
    # the running collector, as far as the lock is concerned: another process holding state/collector.lock
    holder = subprocess.Popen(
        ["python3", "-c", "import sys, time; from fluxforge.locks import service_lock\n"
         f"with service_lock({str(data / 'state')!r}, 'collector', 'fluxforge collect'):\n"
         "    print('held', flush=True); time.sleep(120)"],
        env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        second = _run([*fluxforge_cmd("collect", "--config", str(cfg))])
        assert second.returncode == EXIT_ALREADY_RUNNING, second.stderr
        assert time.monotonic() - t0 < 30
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "already running" in lines[0] and f"pid {holder.pid}" in lines[0], second.stderr
        assert (live / "trades.arrows").read_bytes() == b"journal of the running collector"
        assert not list((data / "segments").glob("ready/*")) and not list((data / "segments").glob("failed/*"))
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_released_on_exit_and_names_its_holder(tmp_path):
    with service_lock(tmp_path, "etl", "fluxforge etl"):
        assert (tmp_path / "etl.lock").read_text().strip().isdigit()
    with service_lock(tmp_path, "etl", "fluxforge etl"):   # released: taken again at once
        pass
