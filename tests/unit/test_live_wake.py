"""LiveWake returns from wait() on each file event the live path needs, and only then.

The poll interval is set to a minute, so a True from wait() can only be an event: the
assertions do not depend on timing.  The False cases use the polling mode, where wait()
times out after the (short) poll interval.
"""
import asyncio

import pytest

from fluxforge.etl import live_wake
from fluxforge.etl.live_wake import LiveWake


@pytest.fixture
def dirs(tmp_path):
    active, ready = tmp_path / "active", tmp_path / "ready"
    active.mkdir()
    ready.mkdir()
    return active, ready


def _append(path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def _run(coro):
    return asyncio.run(coro)


async def _woken(wake: LiveWake, action) -> bool:
    """Clear what is pending, act, then wait: True if the action woke it."""
    wake.wake()
    await wake.wait()  # returns at once (set above); clears
    action()
    return await wake.wait()


def test_the_events_of_the_live_path_wake_it(dirs, monkeypatch):
    monkeypatch.setattr(live_wake, "SAFETY_SECONDS", 60.0)
    active, ready = dirs

    async def scenario():
        wake = LiveWake(active, ready, poll_interval=60.0)
        assert wake.mode == "inotify"
        wake.start(asyncio.get_running_loop())
        seg = active / "seg-1"
        assert await _woken(wake, lambda: seg.mkdir())                      # a segment begins
        assert await _woken(wake, lambda: wake.follow(seg))                 # following a new one: look now
        journal = seg / "orderbook.arrows"
        assert await _woken(wake, lambda: journal.write_bytes(b"x"))        # a journal is created
        assert await _woken(wake, lambda: _append(journal, b"y"))           # ... and grows
        assert await _woken(wake, lambda: seg.rename(ready / seg.name))     # rotated into ready/
        other = active / "seg-2"
        assert await _woken(wake, lambda: other.mkdir())
        wake.follow(other)
        await wake.wait()
        # the old segment's watch is gone: its files no longer wake the loop, the new one's do
        assert await _woken(wake, lambda: (other / "trades.arrows").write_bytes(b"z"))
        assert await _woken(wake, wake.wake)                                 # the segment job's end
        wake.close(asyncio.get_running_loop())

    _run(scenario())


def test_a_moved_away_segment_no_longer_wakes_once_another_is_followed(dirs, monkeypatch):
    active, ready = dirs
    seg, other = active / "seg-1", active / "seg-2"
    seg.mkdir()
    other.mkdir()

    async def scenario():
        wake = LiveWake(active, ready, poll_interval=0.2)
        monkeypatch.setattr(live_wake, "SAFETY_SECONDS", 0.2)
        wake.start(asyncio.get_running_loop())
        wake.follow(seg)
        wake.follow(other)
        await wake.wait()
        (seg / "orderbook.arrows").write_bytes(b"x")  # not watched any more, not in active/ itself
        woke = await wake.wait()
        wake.close(asyncio.get_running_loop())
        return woke

    assert _run(scenario()) is False


def test_without_inotify_it_looks_every_poll_interval(dirs):
    active, ready = dirs

    async def scenario():
        wake = LiveWake(active, ready, poll_interval=0.05, use_inotify=False)
        assert wake.mode == "polling"
        wake.start(asyncio.get_running_loop())
        (active / "seg-1").mkdir()
        timed_out = await wake.wait()
        wake.wake()
        woken = await wake.wait()
        wake.close(asyncio.get_running_loop())
        return timed_out, woken

    assert _run(scenario()) == (False, True)


def test_a_missing_directory_falls_back_to_polling(tmp_path):
    wake = LiveWake(tmp_path / "nope", tmp_path / "nope2", poll_interval=0.1)
    assert wake.mode == "polling"
