"""A dependency-free progress bar for long CLI jobs (replay, compaction, sync, demo).

Why not tqdm: one more dependency on the Pi for ~40 lines.  The bar draws only
when stderr is a TTY; under systemd or in pipes it is silent, and the caller
logs one structured summary line instead.
"""
from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """`with Progress(total, "sync") as p: p.advance(n)`; redraws at most 10x per second."""

    def __init__(self, total: float | None, label: str, unit: str = "", stream: IO[str] | None = None,
                 enabled: bool | None = None):
        self.total = total
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0.0
        self._start = time.monotonic()
        self._last_draw = 0.0
        self.note = ""

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance(self, n: float = 1, note: str | None = None) -> None:
        self.done += n
        if note is not None:
            self.note = note
        self._draw()

    def set(self, done: float, note: str | None = None) -> None:
        self.done = done
        if note is not None:
            self.note = note
        self._draw()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 24)
            head = f"{self.label} [{bar:<24}] {frac:6.1%} {self.done:,.0f}/{self.total:,.0f}{self.unit}"
        else:
            head = f"{self.label} {self.done:,.0f}{self.unit}"
        return f"{head} {rate:,.1f}{self.unit}/s {self.note}".rstrip()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        self.stream.write("\r\x1b[2K" + self.line())
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
