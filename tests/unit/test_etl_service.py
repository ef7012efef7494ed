"""The service loop: READY after the first scan, STATUS with backlog, WATCHDOG, STOPPING, inotify wake-up."""
import asyncio

import pytest

from notify_listener import NotifyListener
from etl_support import LedgerEngine, synthetic_market, write_segments
from fluxforge.config import Config
from fluxforge.etl import memory_trim
from fluxforge.etl.service import EtlService
from fluxforge.service import SystemdNotifier


def config(tmp_path, poll=0.2):
    return Config.model_validate({"data_dir": str(tmp_path), "host_id": "t",
                                  "etl": {"poll_interval": poll, "features": {"bar_durations": [1, 5]}}})


@pytest.mark.parametrize("inotify", [True, False])
def test_service_ready_status_watchdog_and_clean_stop(tmp_path, monkeypatch, inotify):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    trims = []
    monkeypatch.setattr(memory_trim, "TRIM_INTERVAL", 0.05)
    monkeypatch.setattr(memory_trim, "give_back", lambda: trims.append(1) or True)
    listener = NotifyListener(tmp_path / "notify.sock")
    cfg = config(tmp_path / "data", poll=0.2)
    market = synthetic_market(seconds=30)
    staging = tmp_path / "staging"
    segs = write_segments(staging, market, 3, seconds=30)
    # one segment is waiting before start; two arrive while the service runs
    (cfg.segments_dir / "ready").mkdir(parents=True)
    segs[0].rename(cfg.segments_dir / "ready" / segs[0].name)

    async def scenario():
        svc = EtlService(cfg, notifier=SystemdNotifier(str(tmp_path / "notify.sock")), engine_class=LedgerEngine)
        if not inotify:
            svc.watcher.close()
            svc.watcher.mode = "polling"
        task = asyncio.create_task(svc.run())
        for _ in range(200):
            await asyncio.sleep(0.05)
            if any("READY=1" in m for m in listener.messages):
                break
        for s in segs[1:]:
            s.rename(cfg.segments_dir / "ready" / s.name)
        for _ in range(400):
            await asyncio.sleep(0.05)
            if len(list((cfg.segments_dir / "done").iterdir())) == 3:
                break
        for _ in range(400):  # (every TRIM_INTERVAL: at once here, but the loop may be busy)
            if trims:
                break
            await asyncio.sleep(0.05)
        svc.request_stop()
        return await asyncio.wait_for(task, 30), svc

    rc, svc = asyncio.run(scenario())
    listener.close()
    msgs = listener.datagrams  # READY=1 must carry its STATUS= in the same call
    assert rc == 0 and svc.processed == 3
    assert svc.watcher.mode == ("inotify" if inotify else "polling")
    ready = next(m for m in msgs if "READY=1" in m)
    assert "STATUS=backlog 0 segments" in ready or "STATUS=backlog 1 segment" in ready
    assert "WATCHDOG=1" in msgs
    assert any("last seg-testhost-" in m and "rows/s" in m for m in msgs if m.startswith("STATUS="))
    assert msgs.index("STOPPING=1") > msgs.index(ready)
    assert len(list(cfg.features_dir.rglob("part-*.parquet"))) > 0
    assert trims  # the free memory malloc holds went back to the system while it ran


def test_once_processes_backlog_and_exits(tmp_path):
    cfg = config(tmp_path)
    write_segments(cfg.segments_dir / "ready", synthetic_market(seconds=20), 4, seconds=20)
    svc = EtlService(cfg, once=True, engine_class=LedgerEngine)
    assert asyncio.run(svc.run()) == 0
    assert svc.processed == 4 and not list((cfg.segments_dir / "ready").iterdir())


def test_health_withheld_when_segment_runs_too_long(tmp_path):
    cfg = config(tmp_path)
    cfg.etl.max_segment_seconds = 5
    svc = EtlService(cfg, engine_class=LedgerEngine)
    assert svc.healthy() is None
    import time
    svc._busy_since = time.monotonic() - 10
    assert "segment running for" in svc.healthy()
