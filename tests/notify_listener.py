"""A test $NOTIFY_SOCKET: what systemd sees of a service's sd_notify messages.

A thread drains the datagram socket as systemd does (an undrained socket fills
after a few messages and blocks the sender) and timestamps every line on arrival,
so tests can assert both *what* was sent and *when* (e.g. no WATCHDOG=1 while the
loop was blocked).
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifyListener:
    def __init__(self, path: str | Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.arrivals: list[tuple[float, str]] = []  # (monotonic time, line)
        self.datagrams: list[str] = []  # whole sd_notify() calls, e.g. "READY=1\nSTATUS=..."
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except OSError:
                continue
            now = time.monotonic()
            self.datagrams.append(data.decode())
            for line in data.decode().splitlines():
                self.arrivals.append((now, line))

    @property
    def messages(self) -> list[str]:
        return [line for _, line in list(self.arrivals)]

    def times(self, prefix: str) -> list[float]:
        return [t for t, line in list(self.arrivals) if line.startswith(prefix)]

    def has(self, prefix: str) -> bool:
        return bool(self.times(prefix))

    def wait_for(self, text: str, timeout: float) -> bool:
        """Block until a line containing `text` arrived; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.messages):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()
        Path(self.path).unlink(missing_ok=True)
