"""Metrics in a booted container, scraped the way a fleet's monitoring does it.

The container (the `monitor` root: a boot root plus Debian's `prometheus` and
`prometheus-node-exporter`) runs the installed .deb; Debian's Prometheus scrapes
the collector and the ETL on loopback and node_exporter's textfile collector
serves the timers' files, with contrib/prometheus/fluxforge-rules.yml loaded.
The test asks Prometheus's HTTP API, as an operator's Grafana would: message
counters rising, the sync textfile metrics after a sync run, and
FluxForgeCollectorStale firing once the collector is stopped.

The container shares the host's network, so every listener gets a free port.
"""
from __future__ import annotations

import json
import socket
import urllib.parse
import urllib.request

import pytest
import yaml

import build_deb
import buildroot
from conftest import REPO
from container_probe import assert_appliance_up, wait_for

BUCKET = "fluxforge-metricstest"
TEXTFILES = "var/lib/prometheus/node-exporter"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ports:
    def __init__(self):
        self.prometheus, self.node, self.collector, self.etl = (free_port() for _ in range(4))


def prometheus_files(root, ports: Ports) -> None:
    """Debian's units read ARGS from /etc/default/*; the config scrapes every 2 s."""
    (root / "etc/default/prometheus").write_text(
        f'ARGS="--web.listen-address=127.0.0.1:{ports.prometheus} --storage.tsdb.retention.time=1d"\n')
    (root / "etc/default/prometheus-node-exporter").write_text(
        f'ARGS="--web.listen-address=127.0.0.1:{ports.node} '
        f'--collector.textfile.directory=/{TEXTFILES} --collector.systemd"\n')
    (root / "etc/prometheus/fluxforge-rules.yml").write_text((REPO / "contrib/prometheus/fluxforge-rules.yml").read_text())
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": ["/etc/prometheus/fluxforge-rules.yml"],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in (("fluxforge-collector", ports.collector), ("fluxforge-etl", ports.etl),
                              ("node", ports.node))],
    }
    (root / "etc/prometheus/prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def appliance_config(loopback, moto_s3, ports: Ports) -> dict:
    return {
        "data_dir": "/var/lib/fluxforge",
        "host_id": "metricstest",
        "exchanges": [{"name": "binance", "ccxt": loopback.ccxt_config("binance"),
                       "symbols": ["BTC/USDT", "ETH/USDT"], "book_depth": 20}],
        "collector": {"flush_interval": 0.5, "segment_max_seconds": 8},
        "sync": {"enabled": True, "bucket": BUCKET, "endpoint_url": moto_s3.endpoint, "region": "us-east-1",
                 "addressing_style": "path", "aws_access_key_id": "metrics-key",
                 "aws_secret_access_key": "metrics-secret", "require_time_sync": False},
        "metrics": {"collector_port": ports.collector, "etl_port": ports.etl},
    }


def listeners() -> dict[int, str]:
    """TCP port -> IPv4 address of every listening socket, from /proc/net/tcp."""
    out = {}
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A":
            addr, port = local.split(":")
            out[int(port, 16)] = socket.inet_ntoa(bytes.fromhex(addr)[::-1])
    return out


class PrometheusApi:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}/api/v1"

    def get(self, path: str, **params) -> dict:
        url = f"{self.base}/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            body = json.loads(urllib.request.urlopen(url, timeout=10).read())
        except OSError:
            return {}
        return body.get("data", {}) if body.get("status") == "success" else {}

    def query(self, expr: str) -> dict[tuple, float]:
        """{sorted label items: value} of an instant query."""
        result = self.get("query", query=expr).get("result", [])
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in result}

    def scalar(self, expr: str) -> float | None:
        values = list(self.query(expr).values())
        return values[0] if len(values) == 1 else None

    def firing(self, alert: str) -> list[dict]:
        return [a for a in self.get("alerts").get("alerts", [])
                if a["labels"].get("alertname") == alert and a["state"] == "firing"]


@pytest.fixture(scope="module")
def monitored(deb_package, host_tools, loopback, moto_s3, log_dir):
    logs = log_dir / "metrics"
    logs.mkdir()
    ports = Ports()
    root = buildroot.cached_root("monitor", build_deb.native_arch())
    container = buildroot.BootedContainer(root, prefix="ffmetrics", log_dir=logs)
    prometheus_files(container.root, ports)
    etc = container.root / "etc/fluxforge"
    etc.mkdir(parents=True)
    (etc / "config.yaml").write_text(yaml.safe_dump(appliance_config(loopback, moto_s3, ports), sort_keys=False))
    moto_s3.client().create_bucket(Bucket=BUCKET)
    container.start()
    try:
        target = container.root / "root" / deb_package.name
        target.write_bytes(deb_package.read_bytes())
        container.run(["apt-get", "install", "-y", "-q", "-o", "Dpkg::Options::=--force-confold",
                       f"/root/{deb_package.name}"], timeout=900)
        assert_appliance_up(container)
        container.api = PrometheusApi(ports.prometheus)
        container.ports = ports
        yield container
    finally:
        if container.init_pid:
            dump = container.run(["journalctl", "--no-pager", "-n", "3000"], check=False)
            (logs / "journal.txt").write_text(dump.stdout)
        container.stop()


def test_1_prometheus_sees_messages_rising(monitored):
    api = monitored.api
    total = "sum(fluxforge_messages_received_total{job=\"fluxforge-collector\"})"
    first = wait_for(lambda: api.scalar(total), 180, "fluxforge_messages_received_total in Prometheus")
    wait_for(lambda: (api.scalar(total) or 0) > first, 60, "fluxforge_messages_received_total rising")
    symbols = {dict(k)["symbol"] for k in api.query("fluxforge_messages_received_total")}
    assert symbols == {"BTC/USDT", "ETH/USDT"}
    wait_for(lambda: api.scalar('up{job="fluxforge-etl"}') == 1.0, 60, "the ETL scraped")
    wait_for(lambda: (api.scalar('fluxforge_segments{state="done"}') or 0) > 0, 180, "done segments counted")
    assert api.scalar('fluxforge_watchdog_healthy{service="collector"}') == 1.0
    # nothing listens beyond loopback: the endpoints are bound to 127.0.0.1 (shared network namespace)
    listening = listeners()
    for port in (monitored.ports.collector, monitored.ports.etl):
        assert listening.get(port) == "127.0.0.1", listening.get(port)


def test_2_sync_textfile_reaches_prometheus(monitored):
    # the operator's step (docs/operations.md; the Ansible role sets an ACL instead): Debian's
    # textfile directory is root's, 0755
    monitored.run(["chgrp", "fluxforge", f"/{TEXTFILES}"])
    monitored.run(["chmod", "g+w", f"/{TEXTFILES}"])
    monitored.run(["systemctl", "start", "fluxforge-sync.service"], timeout=600)
    prom = monitored.root / TEXTFILES / "fluxforge_sync.prom"
    assert prom.exists(), sorted(p.name for p in prom.parent.iterdir())
    api = monitored.api
    success = wait_for(lambda: api.scalar('fluxforge_task_last_success_timestamp_seconds{task="sync"}'), 60,
                       "the sync textfile metrics via node_exporter")
    assert success > 0
    assert api.scalar('fluxforge_task_outcome{task="sync", outcome="success"}') == 1.0
    assert (api.scalar("fluxforge_sync_uploaded_files") or 0) > 0
    assert api.scalar("fluxforge_sync_last_verified_upload_timestamp_seconds") is not None


def test_3_alert_fires_when_the_collector_is_stopped(monitored):
    api = monitored.api
    assert not api.firing("FluxForgeCollectorStale")
    monitored.run(["systemctl", "stop", "fluxforge-collector.service"])
    try:
        alerts = wait_for(lambda: api.firing("FluxForgeCollectorStale"), 240, "FluxForgeCollectorStale firing")
        assert alerts[0]["labels"]["severity"] == "critical"
    finally:
        monitored.run(["systemctl", "start", "fluxforge-collector.service"])
