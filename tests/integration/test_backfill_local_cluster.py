"""`--engine dask` without `--address`: the LocalCluster the executor starts, and what it computes.

Its workers must run our tasks the way the local pool does -- no statistical
profiler sampling the task thread every 10 ms, no memory monitor, and no
MALLOC_TRIM_THRESHOLD_ from the nanny (it turns off glibc's adaptive mmap
threshold) -- because bench/backfill.py holds Dask to >= 90 % of the pool's rate.
The output is compared with a per-host `fluxforge replay`, file for file.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fleet_bronze import write_fleet  # noqa: E402
from backfill_support import features, replay_per_host, write_config  # noqa: E402

from fluxforge.backfill.executor import open_executor  # noqa: E402
from fluxforge.cli import main  # noqa: E402

pytest.importorskip("distributed")


def worker_settings(_i: int) -> dict:
    import dask
    from distributed import get_worker

    worker = get_worker()
    return {"malloc_trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
            "profile": dask.config.get("distributed.worker.profile.enabled"),
            "callbacks": sorted(worker.periodic_callbacks), "nthreads": worker.state.nthreads,
            "memory_limit": worker.memory_manager.memory_limit, "pid": os.getpid()}


def test_local_cluster_workers_run_tasks_like_the_pool(monkeypatch):
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # a default Dask nanny leaves it in os.environ
    before = dict(os.environ)
    with open_executor("dask", 2) as ex:
        seen = [f.result() for f in [ex.submit(worker_settings, i) for i in range(6)]]
    assert len({s["pid"] for s in seen}) == 2 and os.getpid() not in {s["pid"] for s in seen}
    for s in seen:
        assert s["nthreads"] == 1 and s["malloc_trim"] is None and s["profile"] is False, s
        assert s["memory_limit"] is None, s
        assert not {"profile", "profile-cycle", "memory_monitor"} & set(s["callbacks"]), s
    assert dict(os.environ) == before  # the nanny's variables did not leak into ours (and later pool children)


def test_local_cluster_backfill_equals_per_host_replay(tmp_path, capsys):
    hosts = write_fleet(tmp_path / "bronze", segments=2, seconds=30.0)
    reference = replay_per_host(hosts, tmp_path / "replay")
    cfg = write_config(tmp_path / "c.yaml")
    rc = main(["backfill", *(str(tmp_path / "bronze" / h) for h in sorted(hosts)), "--out", str(tmp_path / "out"),
               "-c", str(cfg), "--engine", "dask", "--workers", "2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    want = features(reference)
    assert want and features(tmp_path / "out") == want
