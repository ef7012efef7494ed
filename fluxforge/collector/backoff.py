"""Capped exponential backoff with jitter for reconnects.

Why jitter: after an exchange-wide outage every watcher of every collector
reconnects; without randomisation they all retry in lock-step.  The delay is
`min(cap, initial * 2**attempt)` scaled by a random factor in [0.5, 1.0]
("equal jitter"), and `reset()` after a successful receive starts over.
"""
from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float, cap: float, rng: random.Random | None = None):
        self.initial = initial
        self.cap = max(cap, initial)
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        base = min(self.cap, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return base * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0
