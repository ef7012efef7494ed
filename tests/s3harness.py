"""Real S3 for tests: moto's server mode in a subprocess on 127.0.0.1, and a fault-injecting HTTP proxy.

The proxy sits between real boto3 and moto and, for requests matching a rule,
answers 500/503/SlowDown itself, resets the TCP connection half-way through the
request body, or flips a byte of the body / of a checksum header.  Everything
else is forwarded byte for byte, so boto3's retries, multipart uploads and
checksums are exercised against a real HTTP server.
"""
from __future__ import annotations

import os
import socket
import socketserver
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Callable

import boto3
import pytest
from botocore.config import Config as BotoConfig

_LAUNCH = """
import sys, time
from moto.server import ThreadedMotoServer
s = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
s.start()
print(s.get_host_and_port()[1], flush=True)
sys.stdin.read()
"""


class MotoServer:
    """`with MotoServer() as m: m.url` -- killed (by pid) on exit.  auth_after=N enables IAM auth after N calls."""

    def __init__(self, auth_after: int | None = None):
        env = dict(os.environ)
        env.pop("AWS_PROFILE", None)
        if auth_after is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(auth_after)
        self.proc = subprocess.Popen([sys.executable, "-c", _LAUNCH], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, text=True)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"moto server did not start: {line!r}")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self, url: str | None = None, key: str = "testing", secret: str = "testing"):
        return boto3.client("s3", endpoint_url=url or self.url, region_name="us-east-1", aws_access_key_id=key,
                            aws_secret_access_key=secret, config=BotoConfig(s3={"addressing_style": "path"}))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def __enter__(self) -> "MotoServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="module")
def moto():
    """A moto server per test module (import this fixture into the module)."""
    with MotoServer() as server:
        yield server


@dataclass
class Fault:
    """When `match(method, path)` holds, do `action` (status|reset|corrupt_body|corrupt_checksum) `times` times."""

    match: Callable[[str, str], bool]
    action: str
    times: int = 1
    status: int = 503
    code: str = "SlowDown"
    hits: int = 0


def is_upload_part(method: str, path: str) -> bool:
    return method == "PUT" and "partNumber=" in path


def is_put_object(method: str, path: str) -> bool:
    return method == "PUT" and "partNumber=" not in path and path.count("/") >= 2


class FaultProxy:
    """HTTP/1.1 proxy on 127.0.0.1:<ephemeral> in front of `upstream_port`."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _pick(self, method: str, path: str) -> Fault | None:
        with self.lock:
            self.requests.append((method, path))
            for f in self.faults:
                if f.hits < f.times and f.match(method, path):
                    f.hits += 1
                    return f
        return None

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = reader.readline()
                if not line:
                    return
                head += line
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {}
            for h in header_lines:
                if ":" in h:
                    k, v = h.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            fault = self._pick(method, path)
            length = int(headers.get("content-length", "0") or 0)
            if headers.get("expect", "").lower() == "100-continue" and not (fault and fault.action == "status"):
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            if fault and fault.action == "reset":
                reader.read(min(length, 64 * 1024) // 2)  # read part of the body, then RST
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                return
            body = reader.read(length) if length else b""
            if "chunked" in headers.get("transfer-encoding", ""):
                body = self._read_chunked(reader)
            if fault and fault.action == "status":
                xml = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{fault.code}</Code>"
                       f"<Message>injected by FaultProxy</Message></Error>").encode()
                conn.sendall(f"HTTP/1.1 {fault.status} Injected\r\nContent-Type: application/xml\r\n"
                             f"Content-Length: {len(xml)}\r\nConnection: close\r\n\r\n".encode() + xml)
                return
            if fault and fault.action == "corrupt_body" and body:
                body = body[:len(body) // 2] + bytes([body[len(body) // 2] ^ 0xFF]) + body[len(body) // 2 + 1:]
            response = self._forward(head, body)
            if fault and fault.action == "corrupt_checksum":
                response = self._corrupt_checksum_header(response)
            conn.sendall(response)
            return  # one request per connection (we told upstream Connection: close)

    @staticmethod
    def _read_chunked(reader) -> bytes:
        raw = b""
        while True:
            size_line = reader.readline()
            raw += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    trailer = reader.readline()
                    raw += trailer
                    if trailer in (b"\r\n", b""):
                        return raw
            raw += reader.read(size + 2)

    def _forward(self, head: bytes, body: bytes) -> bytes:
        lines = [ln for ln in head.decode("latin-1").split("\r\n")
                 if ln and not ln.lower().startswith(("connection:", "expect:"))]
        out = ("\r\n".join(lines) + "\r\nConnection: close\r\n\r\n").encode("latin-1") + body
        with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=60) as up:
            up.sendall(out)
            chunks = []
            while True:
                data = up.recv(1 << 16)
                if not data:
                    break
                chunks.append(data)
        response = b"".join(chunks)
        # make sure the client also closes: replace/insert the Connection header
        head_end = response.find(b"\r\n\r\n")
        rhead, rbody = response[:head_end], response[head_end:]
        rlines = [ln for ln in rhead.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
        return b"\r\n".join(rlines + [b"Connection: close"]) + rbody

    @staticmethod
    def _corrupt_checksum_header(response: bytes) -> bytes:
        head_end = response.find(b"\r\n\r\n")
        lines = response[:head_end].split(b"\r\n")
        for i, ln in enumerate(lines):
            if ln.lower().startswith(b"x-amz-checksum-") and not ln.lower().startswith(b"x-amz-checksum-type"):
                k, v = ln.split(b":", 1)
                lines[i] = k + b": AAAAAA==" + (b"-" + v.split(b"-")[1].strip() if b"-" in v else b"")
        return b"\r\n".join(lines) + response[head_end:]
