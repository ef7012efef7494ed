"""Where one backfill task spends its wall time: exclusive per-phase timers around the real functions.

Why not cProfile: its cumulative times nest (a phase called inside another is
counted in both) and its per-call overhead inflates the Python-heavy parts, so
the split it gave did not add up (negative decode, 60 % "other").  Here each
hooked function is wrapped by a timer that charges time to the innermost active
phase only (an outer phase is paused while an inner one runs); generators are
timed per `next()`.  The phases therefore add up to the measured total exactly,
"other" being the time in none of them.  The hooks are installed for one
`measure()` call and removed after it (bench only, never in the package).
"""
from __future__ import annotations

import functools
import importlib
import inspect
import time
from collections.abc import Callable
from contextlib import contextmanager

# phase -> (module, attribute path) of the functions that are that phase
PHASES: dict[str, list[tuple[str, str]]] = {
    "bronze decode (Parquet read)": [("fluxforge.etl.bronze_reader", "SegmentReader.raw_book_batches"),
                                     ("fluxforge.etl.bronze_reader", "SegmentReader._read")],
    "grouping (time fill, sort+take)": [("fluxforge.etl.book_rows", "by_symbol"),
                                        ("fluxforge.etl.trade_rows", "by_symbol"),
                                        ("fluxforge.etl.ticker_rows", "by_symbol"),
                                        ("fluxforge.etl.segment_feed", "reset_rows")],
    "kernels (engines' process)": [("fluxforge.features.engine", "FeatureEngine.process"),
                                   ("fluxforge.etl.trade_products", "TradeProducts.process")],
    "build + write parts": [("fluxforge.etl.segment_job", "prepare_table"),
                            ("fluxforge.etl.segment_job", "split_by_day"),
                            ("fluxforge.etl.segment_job", "_emitted"),
                            ("fluxforge.etl.hive_writer", "PartWriter.add"),
                            ("fluxforge.etl.hive_writer", "PartWriter.commit")],
    "sha256 verify": [("fluxforge.etl.bronze_reader", "sha256_file")],
    "engine-state snapshots": [("fluxforge.etl.engines", "EngineBank.snapshot"),
                               ("fluxforge.etl.engines", "EngineBank.restore")],
    "stream scan (planning)": [("fluxforge.backfill.unit_job", "scan_segment")],
    "done-markers": [("fluxforge.backfill.dest", "Dest.publish")],
}


class _Clock:
    def __init__(self):
        self.spent: dict[str, float] = {}
        self.stack: list[list] = []  # [phase, started]

    def enter(self, phase: str) -> None:
        now = time.perf_counter()
        if self.stack:
            outer = self.stack[-1]
            self.spent[outer[0]] = self.spent.get(outer[0], 0.0) + now - outer[1]
        self.stack.append([phase, now])

    def leave(self) -> None:
        now = time.perf_counter()
        phase, started = self.stack.pop()
        self.spent[phase] = self.spent.get(phase, 0.0) + now - started
        if self.stack:
            self.stack[-1][1] = now


def _wrap(fn: Callable, phase: str, clock: _Clock) -> Callable:
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*a, **kw):
            it = fn(*a, **kw)
            while True:
                clock.enter(phase)
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    clock.leave()
                yield item
        return gen

    @functools.wraps(fn)
    def call(*a, **kw):
        clock.enter(phase)
        try:
            return fn(*a, **kw)
        finally:
            clock.leave()
    return call


@contextmanager
def _hooks(clock: _Clock):
    undo = []
    try:
        for phase, targets in PHASES.items():
            for module, path in targets:
                owner = importlib.import_module(module)
                *outer, name = path.split(".")
                for part in outer:
                    owner = getattr(owner, part)
                original = owner.__dict__[name]
                setattr(owner, name, _wrap(original, phase, clock))
                undo.append((owner, name, original))
        yield
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def measure(work: Callable[[], object]) -> dict[str, float]:
    """Run `work()` with the phase hooks in; seconds per phase, 'other' and 'total' (wall)."""
    clock = _Clock()
    with _hooks(clock):
        clock.enter("other")
        t0 = time.perf_counter()
        work()
        total = time.perf_counter() - t0
        clock.leave()
    assert not clock.stack, clock.stack
    split = {phase: clock.spent.get(phase, 0.0) for phase in PHASES}
    split["other"] = clock.spent.get("other", 0.0)
    split["total"] = total
    return split
