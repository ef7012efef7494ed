"""LiveWake returns from wait() on each event the live path needs, and only then.

The safety timeout is set to a minute where a True from wait() must be an event, so those
assertions do not depend on timing.  The False cases use short timeouts, where wait()
returning False is all that is asserted.
"""
import asyncio

import pytest

from fluxforge.bronze.segments import SegmentStore
from fluxforge.etl import live_wake
from fluxforge.etl.live_wake import LiveWake


@pytest.fixture
def store(tmp_path):
    return SegmentStore(tmp_path / "segments").ensure()


def _wake(store, **kw) -> LiveWake:
    return LiveWake(store.dir("active"), store.dir("ready"), **kw)


async def _woken(wake: LiveWake, action) -> bool:
    """Clear what is pending, act, then wait: True if the action woke it."""
    wake.wake()
    await wake.wait()  # returns at once (set above); clears
    action()
    return await wake.wait()


def test_flush_marks_and_segment_moves_wake_it(store, monkeypatch):
    monkeypatch.setattr(live_wake, "SAFETY_SECONDS", 60.0)

    async def scenario():
        wake = _wake(store, poll_interval=0.1)
        assert wake.mode == "inotify" and not wake.polling
        wake.start(asyncio.get_running_loop())
        seg = store.dir("active") / "seg-t-20260101T000000Z-000001"
        assert await _woken(wake, seg.mkdir)                                 # a segment begins
        assert await _woken(wake, store.mark_flush)                          # the first flush (creates the mark)
        assert await _woken(wake, store.mark_flush)                          # ... and every later one
        assert await _woken(wake, lambda: seg.rename(store.dir("ready") / seg.name))  # rotated into ready/
        assert await _woken(wake, wake.wake)                                 # the segment job's end
        wake.close(asyncio.get_running_loop())

    asyncio.run(scenario())


def test_journal_writes_alone_do_not_wake_it(store, monkeypatch):
    """A flush is read whole, once its mark says every channel is written -- not a channel at a time."""
    monkeypatch.setattr(live_wake, "SAFETY_SECONDS", 0.3)
    seg = store.dir("active") / "seg-t-20260101T000000Z-000001"
    seg.mkdir()

    async def scenario():
        wake = _wake(store, poll_interval=0.1)
        wake.start(asyncio.get_running_loop())
        (seg / "orderbook.arrows").write_bytes(b"x")
        woke = await wake.wait()
        wake.close(asyncio.get_running_loop())
        return woke

    assert asyncio.run(scenario()) is False


def test_rows_found_by_a_safety_look_switch_it_to_polling(store, monkeypatch):
    monkeypatch.setattr(live_wake, "SAFETY_SECONDS", 0.05)

    async def scenario():
        wake = _wake(store, poll_interval=0.01)
        wake.start(asyncio.get_running_loop())
        wake.wake()
        await wake.wait()
        wake.found_unannounced()  # rows after an event: as it should be
        assert not wake.polling
        assert await wake.wait() is False
        wake.found_unannounced()  # rows after a timeout: no event announced them
        assert wake.polling
        wake.close(asyncio.get_running_loop())

    asyncio.run(scenario())


def test_without_inotify_it_looks_every_poll_interval(store):
    async def scenario():
        wake = _wake(store, poll_interval=0.05, use_inotify=False)
        assert wake.mode == "polling" and wake.polling
        wake.start(asyncio.get_running_loop())
        store.mark_flush()
        timed_out = await wake.wait()
        wake.wake()
        woken = await wake.wait()
        wake.close(asyncio.get_running_loop())
        return timed_out, woken

    assert asyncio.run(scenario()) == (False, True)


def test_a_missing_directory_falls_back_to_polling(tmp_path):
    wake = LiveWake(tmp_path / "nope", tmp_path / "nope2", poll_interval=0.1)
    assert wake.mode == "polling" and wake.polling


def test_the_mark_is_no_segment(store):
    store.mark_flush()
    assert (store.dir("active") / ".flushed").is_file()
    assert store.list("active") == []
