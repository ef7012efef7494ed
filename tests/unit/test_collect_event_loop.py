"""`fluxforge collect` runs on uvloop when it is importable, on asyncio's own loop when not.

uvloop is what lowers the collector's CPU per message (bench/collector.py --only cryptofeed);
losing it silently (an import that stopped working) would only show up in that benchmark.
"""
from __future__ import annotations

import asyncio
import sys

import uvloop

from fluxforge.commands.collect import event_loop_runner


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_collector_loop_is_uvloop_when_installed():
    runner = event_loop_runner()
    assert runner(_loop_type()) is uvloop.Loop


def test_collector_falls_back_to_asyncio_without_uvloop(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    runner = event_loop_runner()
    assert runner is asyncio.run
    assert not issubclass(runner(_loop_type()), uvloop.Loop)
