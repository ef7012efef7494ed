"""Linux inotify through ctypes, and an asyncio wake-up it sets: the ETL's watchers (ready/ for the
segment job, etl/live_wake.py for the live path) wake on file-system events, not on a timer.

Why ctypes: no compiled dependency.  Where inotify is missing (non-Linux, exhausted
watches, some container file systems) `Inotify.open()` or `add()` gives None and the
caller polls instead -- every caller rescans after a wake-up anyway, so a lost or
coalesced event can only delay work, never lose it.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

from ..logs import get_logger

log = get_logger("fluxforge.etl.watch")

IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000


class Inotify:
    """One non-blocking inotify descriptor and its watches."""

    def __init__(self, fd: int, libc):
        self.fd = fd
        self._libc = libc

    @classmethod
    def open(cls) -> "Inotify | None":
        name = ctypes.util.find_library("c")
        if not name:
            return None
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        except (OSError, AttributeError):
            return None
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            log.warning("inotify_unavailable", error=os.strerror(ctypes.get_errno()), fallback="polling")
            return None
        return cls(fd, libc)

    def add(self, path: Path, mask: int) -> int | None:
        """Watch `path` (a directory: also the files in it) for `mask`; its watch descriptor, or None."""
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            if err not in (errno.ENOENT, errno.ENOTDIR):  # gone already: the caller's rescan finds out
                log.warning("inotify_watch_failed", path=str(path), error=os.strerror(err))
            return None
        return wd

    def drain(self) -> None:
        """Read (and forget) every queued event: callers only need to know that something happened."""
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass
        except OSError as e:
            log.warning("inotify_read_failed", error=str(e))

    def close(self) -> None:
        os.close(self.fd)


class Waker:
    """An asyncio wake-up that inotify events (and `wake()`) set: `await wait(timeout)` is True when
    woken, False on timeout.  With `ino` None only `wake()` wakes it (the caller polls)."""

    def __init__(self, ino: Inotify | None):
        self._ino = ino
        self._event: asyncio.Event | None = None
        self.mode = "inotify" if ino is not None else "polling"

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._event = asyncio.Event()
        if self._ino is not None:
            loop.add_reader(self._ino.fd, self._drain)

    def _drain(self) -> None:
        self._ino.drain()
        self.wake()

    def wake(self) -> None:
        """Let the next (or a waiting) `wait()` return now."""
        if self._event is not None:
            self._event.set()

    async def wait(self, timeout: float) -> bool:
        assert self._event is not None, "start() first"
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._event.clear()

    def close(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._ino is not None:
            if loop is not None:
                loop.remove_reader(self._ino.fd)
            self._ino.close()
            self._ino = None


def watching(paths_masks: list[tuple[Path, int]]) -> Inotify | None:
    """An Inotify watching each (path, mask), or None (then the caller polls) if any cannot be watched."""
    ino = Inotify.open()
    if ino is not None and any(ino.add(path, mask) is None for path, mask in paths_masks):
        ino.close()
        return None
    return ino
