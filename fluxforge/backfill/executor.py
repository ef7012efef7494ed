"""The engine seam: a `concurrent.futures.Executor` from a local process pool or a Dask cluster.

Why a seam and not a scheduler: units are independent tasks, so any executor
runs them; the project keeps none of its own.  `local` (default, no extra
dependency) is a spawn-context ProcessPoolExecutor of `workers` processes.
`dask` is `distributed.Client(...).get_executor()`: against `address` (a
scheduler started on a cluster, see docs/backfill.md) or, without one, a
LocalCluster of `workers` single-threaded worker processes, stripped of what
Dask's workers do besides our tasks (`LOCAL_CLUSTER_CONFIG`) so that they run
them as fast as the pool does.  A Dask worker that dies mid-task has its task
rescheduled by the scheduler on another worker.
"""
from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

ENGINES = ("local", "dask")


class EngineUnavailable(Exception):
    """The engine cannot be used here (Dask not installed, scheduler unreachable): one clear line."""


# What a local cluster's workers do besides our tasks, cut to what the local pool does (bench/backfill.py):
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,  # a stack sample of the task thread every 10 ms, under the GIL
    "distributed.admin.system-monitor.gil.enabled": False,  # a GIL poll every 1 ms (when gilknocker is installed)
    "distributed.admin.tick.interval": "1s",  # event-loop health checks, 50/s by default
    # the nanny's default MALLOC_TRIM_THRESHOLD_=65536 also turns off glibc's adaptive mmap threshold:
    # every large numpy array is then a fresh mmap (~18 % more page faults per unit, ~6 % more CPU)
    "distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1},
    "distributed.scheduler.worker-saturation": 1.0,  # hand a task to a worker when it is free: longest first holds
}


def local_cluster(cluster_class, workers: int):
    """A LocalCluster of `workers` single-threaded processes configured like the local pool:
    no dashboard, no memory limit (the pool has none), no profiler; workers start in parallel."""
    import os

    import dask

    saved = dict(os.environ)
    try:
        with dask.config.set(LOCAL_CLUSTER_CONFIG):
            return cluster_class(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                 memory_limit=0)
    finally:  # the nanny sets its pre-spawn variables in *our* environment: keep them out of later children
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def open_executor(engine: str, workers: int, address: str | None = None) -> Iterator[Executor]:
    if engine == "local":
        if address:
            raise EngineUnavailable("--address needs --engine dask")
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool
        return
    if engine != "dask":
        raise EngineUnavailable(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise EngineUnavailable("--engine dask needs Dask distributed: install the 'backfill' extra "
                                "(pip install 'fluxforge[backfill]'; the .deb includes it)") from None
    cluster = None
    try:
        if address:
            client = Client(address, timeout="20s")
        else:
            cluster = local_cluster(LocalCluster, workers)
            client = Client(cluster)
    except (OSError, TimeoutError) as e:
        if cluster is not None:
            cluster.close()
        raise EngineUnavailable(f"cannot reach the Dask scheduler {address or '(local cluster)'}: {e}") from None
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
