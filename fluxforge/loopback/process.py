"""Run the loopback exchange as a subprocess (`fluxforge loopback --print-config`).

Why: crash tests SIGKILL the collector, and benchmarks want the exchange's CPU
out of the measured process; both need the exchange in its own process while
keeping the same API: the ccxt config dict, runtime faults and the sent-log
(over the `/_loopback/*` HTTP endpoints).
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import urllib.request


def fluxforge_command() -> list[str]:
    """argv prefix running the `fluxforge` CLI with this interpreter.  Not `-m fluxforge.cli`:
    as __main__ its UserError would be a different class from the one commands raise."""
    return [sys.executable, "-c", "import sys; from fluxforge.cli import main; sys.exit(main())"]


class LoopbackProcess:
    """`with LoopbackProcess(["--symbols", "BTC/USDT", "--rate", "50"]) as lp: lp.ccxt_config("binance")`."""

    def __init__(self, args: list[str] = (), *, startup_timeout: float = 30.0, stderr=None):
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.stderr = stderr
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}

    def start(self) -> "LoopbackProcess":
        cmd = [*fluxforge_command(), "loopback", "--print-config", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr)
        line = self._read_line(self.startup_timeout)
        try:
            self.info = json.loads(line)
        except ValueError:
            self.stop()
            raise RuntimeError(f"fluxforge loopback did not start (said {line!r})") from None
        return self

    def _read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        fd, buf = self.proc.stdout.fileno(), b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
        return buf.decode(errors="replace").strip()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def port(self) -> int:
        return self.info["port"]

    @property
    def url(self) -> str:
        return self.info["url"]

    def ccxt_config(self, exchange: str = "binance") -> dict:
        return self.info["ccxt"][exchange]

    def stats(self, detail: bool = False) -> dict:
        with urllib.request.urlopen(f"{self.url}/_loopback/stats?detail={int(detail)}", timeout=30) as r:
            return json.load(r)

    def inject(self, kind: str, **params) -> None:
        """Fire a fault now, e.g. `inject("gap", symbol="BTC/USDT")`, `inject("stall", seconds=3)`."""
        body = json.dumps({"kind": kind, **params}).encode()
        req = urllib.request.Request(f"{self.url}/_loopback/fault", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            json.load(r)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        finally:
            self.proc.stdout.close()

    def __enter__(self) -> "LoopbackProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
