"""bench/soak.py's verdicts on made-up samples: a flat run passes, and each thing it watches fails
it when it grows or stops -- so an hour's soak that says PASSED has looked."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import soak  # noqa: E402

MIN = 60.0


def _run(tmp_path: Path, minutes: int = 120, change=None) -> SimpleNamespace:
    """A soak of `minutes`, a sample a minute, everything flat unless `change(sample, t_minutes)` edits it."""
    samples = []
    for m in range(minutes):
        s = {"t": m * MIN, "subscriber_rows": 1000 * m,
             "files": {a: 3 for a in soak.AREAS} | {"segments/failed": 0, "features": 10 * m,
                                                     soak.DONE: min(m, 60) * 5}}
        for name in ("collector", "etl", "subscriber"):
            s[name] = {"rss_mb": 200.0, "fds": 20, "threads": 8}
        if change is not None:
            change(s, m)
        samples.append(s)
    args = SimpleNamespace(sample_seconds=MIN, timer_minutes=5.0, segment_seconds=60.0)
    return SimpleNamespace(samples=samples, args=args, timer_runs=[("compact", 0, 1.0), ("sync", 0, 2.0)],
                           tmp=tmp_path, kills=[])


RESULT = {"status": (0, "OK"), "exit_codes": {"subscriber": None, "collector": None, "etl": None}}


def test_a_flat_run_passes(tmp_path, capsys):
    assert soak.report(_run(tmp_path), RESULT, warmup_minutes=17) == 0
    assert "PASSED" in capsys.readouterr().out


def _leak(s, m):
    s["etl"]["rss_mb"] = 200.0 + m  # a MB a minute


def _fds(s, m):
    s["collector"]["fds"] = 20 + m // 10


def _died(s, m):
    if m > 90:
        s["subscriber"] = None


def _stalled(s, m):
    s["subscriber_rows"] = min(s["subscriber_rows"], 80_000)


def _scratch(s, m):
    s["files"]["state"] = 3 + m // 5


def _failed(s, m):
    s["files"]["segments/failed"] = int(m > 100) * 5


def _done(s, m):
    s["files"][soak.DONE] = m * 5  # sync stopped deleting after the hour


@pytest.mark.parametrize("change", [_leak, _fds, _died, _stalled, _scratch, _failed, _done])
def test_what_grows_or_stops_fails_the_soak(tmp_path, capsys, change):
    assert soak.report(_run(tmp_path, change=change), RESULT, warmup_minutes=17) >= 1
    assert "FAILED" in capsys.readouterr().out


def test_a_failed_timer_run_fails_the_soak(tmp_path, capsys):
    run = _run(tmp_path)
    run.timer_runs.append(("sync", 1, 3.0))
    assert soak.report(run, RESULT, warmup_minutes=17) == 1


def test_done_is_not_judged_before_the_hour_sync_keeps(tmp_path, capsys):
    assert soak.report(_run(tmp_path, minutes=60, change=_done), RESULT, warmup_minutes=17) == 0
    assert "not judged" in capsys.readouterr().out


def test_a_killed_service_is_not_judged_on_what_its_restarts_reset(tmp_path, capsys):
    run = _run(tmp_path, change=_leak)  # fails the run without kills (above)
    run.kills = [(m * MIN, "etl") for m in range(20, 120, 20)]
    assert soak.report(run, RESULT, warmup_minutes=17) == 0
    assert "etl        memory, descriptors and threads not judged" in capsys.readouterr().out


@pytest.mark.parametrize("change", [_scratch, _failed, _stalled, _fds])
def test_what_kills_leave_behind_still_fails_the_soak(tmp_path, capsys, change):
    run = _run(tmp_path, change=change)
    run.kills = [(m * MIN, "etl") for m in range(20, 120, 20)]
    assert soak.report(run, RESULT, warmup_minutes=17) >= 1  # _fds: the collector, never killed
