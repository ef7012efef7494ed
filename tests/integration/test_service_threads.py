"""The services' threads on a many-core host stay within their unit's TasksMax=.

Why: numpy's OpenBLAS starts a thread per core at import and Arrow's CPU pool one per core
as work arrives.  Under `TasksMax=64` on a 64-core cloud VM, Arrow's reads of feature parts
(150+ columns) failed with "Failed to launch worker thread".  This machine has 2 cores, so
Arrow is told it has 64 (OMP_NUM_THREADS=64, which it reads as its core count) and the real
`fluxforge compact` runs in a pids cgroup holding the unit's TasksMax, with the environment
the unit sets (`Environment=` lines of systemd/fluxforge-compact.service): it merges every part,
rows unchanged.  Without that environment Arrow's pools may grow past the limit (checked on their
sizes: whether one compaction's reads get there is a race; most runs here failed, with Arrow's
error or a crash by SIGSEGV, some merged).  (OpenBLAS caps itself at the real cores, so its line cannot
be shown here beyond being in the environment.)
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from syncdata import fluxforge_cli, make_config, partition_rows, utc_day, write_part  # noqa: E402
from unit_files import unit_file  # noqa: E402

from fluxforge.bronze.segments import SegmentId  # noqa: E402


class PidsCgroup:
    """A pids cgroup of its own (v1 `pids` hierarchy or v2), limited to `limit` tasks; removed on exit."""

    def __init__(self, limit: int):
        v1, v2 = Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")
        if (v1 / "cgroup.procs").exists():
            root = v1
        elif "pids" in ((v2 / "cgroup.subtree_control").read_text() if (v2 / "cgroup.subtree_control").exists() else ""):
            root = v2
        else:
            pytest.skip("no pids cgroup controller to hold a TasksMax here")
        self.path = root / f"fluxforge-test-{uuid.uuid4().hex[:8]}"
        try:
            self.path.mkdir()
        except OSError as e:
            pytest.skip(f"cannot create a pids cgroup: {e}")
        (self.path / "pids.max").write_text(str(limit))

    def enter(self) -> None:
        """In the child, before exec: move this process into the cgroup."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.path.rmdir()


def wide_table(start_ms: int, rows: int, seed: int, columns: int = 160) -> pa.Table:
    """hf-like rows as wide as the ETL's (features/layout.py: ~160 columns)."""
    rng = np.random.default_rng(seed)
    cols = {"timestamp": pa.array(start_ms + np.arange(rows, dtype=np.int64) * 1000, pa.timestamp("ms", tz="UTC"))}
    cols.update({f"f{i:03d}": rng.normal(100 + i, 1, rows) for i in range(columns)})
    return pa.table(cols)


def test_compaction_under_the_units_tasksmax_on_a_64_core_host(tmp_path):
    service = unit_file("fluxforge-compact.service")["Service"]
    tasks_max = int(service["TasksMax"][-1])
    unit_env = dict(e.split("=", 1) for value in service["Environment"] for e in shlex.split(value))
    assert {"OPENBLAS_NUM_THREADS": "1", "OMP_THREAD_LIMIT": "8"}.items() <= unit_env.items(), unit_env
    day = utc_day(3)

    def closed_day(data: Path) -> tuple[Path, Path]:
        """A data dir with a closed day of six wide hf parts: its config file and the partition."""
        cfg = make_config(data)
        for s in range(6):
            seg = SegmentId.new("pi01", s + 1, day)
            start = int(day.timestamp() * 1000) + s * 3_600_000
            write_part(cfg.features_dir, "hf", "binance", "BTC-USDT", day.date().isoformat(), seg,
                       wide_table(start, 4000, s))
        config = data.parent / f"{data.name}.yaml"
        config.write_text(yaml.safe_dump({"data_dir": str(data), "host_id": "pi01", "logging": {"format": "json"}}))
        partition = next(cfg.features_dir.rglob("date=*"))
        return config, partition

    def compact(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
        with PidsCgroup(tasks_max) as cgroup:
            return subprocess.run(fluxforge_cli("compact", "--config", str(config)), capture_output=True, text=True,
                                  timeout=600, preexec_fn=cgroup.enter, env={**os.environ, **env})

    def arrow_pools(env: dict[str, str]) -> int:
        """The threads Arrow's CPU and IO pools may start in a process with this environment."""
        out = subprocess.run([sys.executable, "-c", "import pyarrow as pa; print(pa.cpu_count() + pa.io_thread_count())"],
                             capture_output=True, text=True, check=True, env={**os.environ, **env})
        return int(out.stdout)

    as_64_cores = {"OMP_NUM_THREADS": "64"}
    # Without the unit's environment Arrow may start more threads than TasksMax= allows (it starts
    # them as work arrives, so whether a given compaction gets there is a race: it failed in most
    # runs here, with Arrow's error or SIGSEGV, and merged in some); with it, well within.
    assert arrow_pools(as_64_cores) + 1 > tasks_max
    assert arrow_pools({**as_64_cores, **unit_env}) + 1 <= tasks_max // 2

    config, partition = closed_day(tmp_path / "unit")
    rows = partition_rows(partition)
    run = compact(config, {**as_64_cores, **unit_env})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert len(list(partition.glob("part-*.parquet"))) == 1
    assert partition_rows(partition).equals(rows)
