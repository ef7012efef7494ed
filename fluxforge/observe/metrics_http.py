"""The /metrics HTTP server: prometheus_client's WSGI app on a daemon thread, its connections bounded.

Why not prometheus_client's `start_http_server`: it starts a thread per connection, and that
thread waits for a request line for ever, so every idle connection to the port holds a
thread.  The services run under `TasksMax=` (64 for the ETL): a few dozen idle connections --
a port scanner, a health check that keeps its socket open, a client stuck in a loop -- left a
service unable to start the threads its own work needs.  Here at most MAX_CONNECTIONS are
served at once (a scrape takes milliseconds and Prometheus scrapes a target one at a time);
one more is closed at once, and one that sends nothing for IDLE_TIMEOUT seconds is closed.
"""
from __future__ import annotations

import socket
import sys
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

MAX_CONNECTIONS = 4
IDLE_TIMEOUT = 10.0  # seconds a connection may send nothing (Prometheus' default scrape timeout)


class _Handler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT  # socketserver.StreamRequestHandler: the connection's socket timeout

    def log_message(self, format, *args):  # noqa: A002 -- a scrape is not worth a journal line
        pass


class MetricsServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most MAX_CONNECTIONS of them; `refused` counts those closed at once."""

    daemon_threads = True

    def __init__(self, *args, **kwargs):
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.refused = 0
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (TimeoutError, ConnectionError)):
            return  # an idle connection closed, or a client gone: nothing to report
        super().handle_error(request, client_address)


def start(address: str, port: int, registry: CollectorRegistry) -> tuple[MetricsServer, threading.Thread]:
    """Serve `registry` on address:port (IPv4 or IPv6, as the address is) from a daemon thread."""
    family, _, _, _, sockaddr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    server_class = type("MetricsServer", (MetricsServer,), {"address_family": family})
    server = make_server(sockaddr[0], port, make_wsgi_app(registry), server_class, handler_class=_Handler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server, thread
