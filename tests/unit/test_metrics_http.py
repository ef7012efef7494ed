"""The /metrics server holds at most MAX_CONNECTIONS threads, whatever connects to it (observe/metrics_http.py).

Why: prometheus_client's own server held a thread per idle connection for ever, and the
services run under TasksMax= (64 for the ETL).  Real sockets, the real server thread.
"""
from __future__ import annotations

import socket
import threading
import time
import urllib.request

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from fluxforge.observe import metrics_http
from fluxforge.observe.metrics_http import MAX_CONNECTIONS


def _until(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _served(idle_timeout: float, monkeypatch):
    monkeypatch.setattr(metrics_http._Handler, "timeout", idle_timeout)
    registry = CollectorRegistry()
    Counter("fluxforge_test_scrapes", "a counter to find in the scrape", registry=registry).inc(3)
    return metrics_http.start("127.0.0.1", 0, registry)


def _scrape(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    return {s.name: s.value for fam in text_string_to_metric_families(body) for s in fam.samples}


def test_idle_connections_beyond_the_limit_are_closed_at_once_and_take_no_thread(monkeypatch):
    server, _thread = _served(600.0, monkeypatch)  # nobody times out here: which ones are refused is exact
    try:
        base = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", server.server_port)) for _ in range(MAX_CONNECTIONS + 20)]
        _until(lambda: server.refused == 20, "the 20 beyond the limit refused")
        assert threading.active_count() - base == MAX_CONNECTIONS
        for s in idle[MAX_CONNECTIONS:]:
            s.settimeout(30)
            assert s.recv(1) == b""  # closed by the server
        for s in idle:
            s.close()
        _until(lambda: threading.active_count() == base, "the held connections' threads ended")
        assert _scrape(server.server_port)["fluxforge_test_scrapes_total"] == 3.0
    finally:
        server.shutdown()
        server.server_close()


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(monkeypatch, capsys):
    server, _thread = _served(0.5, monkeypatch)
    try:
        base = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", server.server_port)) for _ in range(MAX_CONNECTIONS)]
        for s in idle:
            s.settimeout(30)
            assert s.recv(1) == b""  # the server gave up on it
            s.close()
        _until(lambda: threading.active_count() == base, "the idle connections' threads ended")
        assert _scrape(server.server_port)["fluxforge_test_scrapes_total"] == 3.0
        assert server.refused == 0
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in capsys.readouterr().err  # a timeout is not an error worth a journal line
