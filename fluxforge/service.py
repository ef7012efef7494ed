"""systemd integration shared by the long-running services (DESIGN decision 6).

Why it is here: READY=1, STATUS=, STOPPING=1 and the watchdog are the same
contract for the collector and the ETL.  The watchdog ping is sent from the
asyncio loop itself (never a helper thread) and only while the service's health
check passes, so a wedged loop or a stuck writer makes systemd kill and restart
the process.  Outside systemd (no $NOTIFY_SOCKET) every call is a cheap no-op.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable

from .logs import get_logger

log = get_logger("fluxforge.service")


class SystemdNotifier:
    """sd_notify(3) over $NOTIFY_SOCKET (abstract or path socket)."""

    def __init__(self, address: str | None = None):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        self._addr: str | None = None
        if address:
            self._addr = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *assignments: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(assignments).encode(), self._addr)
        except OSError as e:
            log.warning("sd_notify_failed", error=str(e))

    def ready(self, status: str | None = None) -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        text = text.replace("\n", " ")
        if text != self._last_status:
            self._last_status = text
            self.notify(f"STATUS={text}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Half of $WATCHDOG_USEC in seconds, or None when systemd set no watchdog for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        return max(int(usec) / 2e6, 0.05)
    except ValueError:
        return None


async def watchdog_loop(notifier: SystemdNotifier, healthy: Callable[[], str | None],
                        interval: float | None = None) -> None:
    """Ping WATCHDOG=1 from this event loop while `healthy()` returns None.

    `healthy()` returns None when fine, else a reason string (logged once per
    change, and no ping is sent, so systemd's WatchdogSec= fires).
    """
    interval = interval if interval is not None else watchdog_interval()
    if interval is None:
        return
    last_reason: str | None = None
    while True:
        reason = healthy()
        if reason is None:
            notifier.watchdog()
            if last_reason is not None:
                log.info("watchdog_healthy_again")
        elif reason != last_reason:
            log.error("watchdog_withheld", reason=reason)
        last_reason = reason
        await asyncio.sleep(interval)


def install_stop_handlers(loop: asyncio.AbstractEventLoop, on_stop: Callable[[], None]) -> None:
    """SIGTERM/SIGINT call `on_stop` once inside the loop (the caller sends STOPPING=1)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop)
