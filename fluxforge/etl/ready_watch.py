"""Wait for segments to arrive in ready/: inotify where available, polling otherwise.

Why ctypes inotify: the collector publishes a segment with one rename into
ready/ (IN_MOVED_TO); waking on that event gives sub-second latency without a
busy poll on a Pi, and needs no compiled dependency.  Where inotify is missing
(non-Linux, exhausted watches, some container file systems) the watcher simply
times out every `poll_interval` and the caller rescans -- the caller always
rescans anyway, so a lost or coalesced event can only delay, never lose, work.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from pathlib import Path

from ..logs import get_logger

log = get_logger("fluxforge.etl.watch")

IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000


class ReadyWatcher:
    """`await watcher.wait(timeout)` returns when ready/ may have changed or after timeout."""

    def __init__(self, directory: Path, poll_interval: float, use_inotify: bool = True):
        self.directory = Path(directory)
        self.poll_interval = poll_interval
        self._fd: int | None = None
        self._event: asyncio.Event | None = None
        if use_inotify:
            self._fd = _inotify_open(self.directory)
        self.mode = "inotify" if self._fd is not None else "polling"

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._event = asyncio.Event()
        if self._fd is not None:
            loop.add_reader(self._fd, self._drain)

    def _drain(self) -> None:
        try:
            while os.read(self._fd, 65536):
                pass
        except BlockingIOError:
            pass
        except OSError as e:
            log.warning("inotify_read_failed", error=str(e))
        if self._event is not None:
            self._event.set()

    def wake(self) -> None:
        """Let a waiting `wait()` return now (used on stop)."""
        if self._event is not None:
            self._event.set()

    async def wait(self, timeout: float | None = None) -> bool:
        """True if woken by an event, False on timeout.  Polling mode always times out."""
        assert self._event is not None, "start() first"
        if timeout is None:
            timeout = self.poll_interval if self._fd is None else max(self.poll_interval, 30.0)
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._event.clear()

    def close(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._fd is not None:
            if loop is not None:
                loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None


def _inotify_open(directory: Path) -> int | None:
    """An inotify fd watching `directory` for entries moved or created in it, or None."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        init1, add_watch = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    fd = init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        log.warning("inotify_unavailable", error=os.strerror(ctypes.get_errno()), fallback="polling")
        return None
    if add_watch(fd, os.fsencode(directory), IN_MOVED_TO | IN_CREATE) < 0:
        log.warning("inotify_unavailable", error=os.strerror(ctypes.get_errno()), fallback="polling")
        os.close(fd)
        return None
    return fd
