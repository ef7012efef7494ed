"""The engine seam: a `concurrent.futures.Executor` from a local process pool or a Dask cluster.

Why a seam and not a scheduler: units are independent tasks, so any executor
runs them; the project keeps none of its own.  `local` (default, no extra
dependency) is a spawn-context ProcessPoolExecutor of `workers` processes.
`dask` is `distributed.Client(...).get_executor()`: against `address` (a
scheduler started on a cluster, see docs/backfill.md) or, without one, a
LocalCluster of `workers` single-threaded worker processes.  A Dask worker that
dies mid-task has its task rescheduled by the scheduler on another worker.
"""
from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

ENGINES = ("local", "dask")


class EngineUnavailable(Exception):
    """The engine cannot be used here (Dask not installed, scheduler unreachable): one clear line."""


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
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
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
