"""Run a FluxForge service as a child process the way systemd would, for `fluxforge demo`.

Why a tiny service manager: the demo must exercise the same code paths as the
appliance -- `fluxforge collect` and `fluxforge etl` as real processes -- and
know when each is *really* ready.  So, like systemd, we hand each child its own
`$NOTIFY_SOCKET` (an abstract unix datagram socket), wait for `READY=1`, keep
the last `STATUS=` line, stop it with SIGTERM and give it time to flush.  Its
log lines (JSON) go to a file, whose last error is what we show if it dies.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path


# The `fluxforge` command with this interpreter (the console script may not be on PATH, e.g. in a venv).
FLUXFORGE = (sys.executable, "-m", "fluxforge")


class ServiceFailed(Exception):
    """The child exited or never became ready; the message is one line for the user."""


class ServiceChild:
    """One `fluxforge <command> --config FILE` child with its notify socket and log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = [*FLUXFORGE, *argv]
        self.log_path = log_path
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.ready = False
        self.status = ""
        self._sock: socket.socket | None = None
        self._address = f"@fluxforge-demo-{os.getpid()}-{name}-{secrets.token_hex(4)}"

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self._address[1:])
        self._sock.setblocking(False)
        env = {**os.environ, **self.extra_env, "NOTIFY_SOCKET": self._address}
        env.pop("WATCHDOG_USEC", None)
        env.pop("JOURNAL_STREAM", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env, start_new_session=True)

    def poll_notify(self) -> None:
        """Drain pending sd_notify datagrams: READY=1 and the latest STATUS=."""
        while self._sock is not None:
            try:
                data = self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            for line in data.decode(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key == "READY" and value == "1":
                    self.ready = True
                elif key == "STATUS":
                    self.status = value

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceFailed(f"{self.name} exited with status {self.proc.returncode}: {self.last_error()}")

    async def wait_ready(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self.poll_notify()
            if self.ready:
                return
            self.check_alive()
            if loop.time() > deadline:
                raise ServiceFailed(f"{self.name} did not report READY=1 within {timeout:.0f}s "
                                    f"(last status: {self.status or 'none'}; log {self.log_path})")
            await asyncio.sleep(0.1)

    async def stop(self, timeout: float) -> int:
        """SIGTERM, wait up to `timeout` for a clean exit, then SIGKILL; returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while self.proc.poll() is None and loop.time() < deadline:
                self.poll_notify()
                await asyncio.sleep(0.1)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.close()
        return self.proc.returncode

    def kill(self, grace: float = 5.0) -> None:
        """Cleanup on any exit path (our own child, by pid): SIGTERM so it can flush, SIGKILL after `grace`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def last_error(self) -> str:
        """The last error/exception line of the child's log, for a one-line message."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        for line in reversed(lines):
            try:
                rec = json.loads(line)
            except ValueError:
                if line.strip() and not line.startswith(" "):
                    return line.strip()[:300]
                continue
            if isinstance(rec, dict) and rec.get("level") in ("error", "critical", "exception"):
                extra = rec.get("error") or rec.get("reason") or ""
                return f"{rec.get('event')} {extra}".strip()[:300]
        return f"see {self.log_path}"
