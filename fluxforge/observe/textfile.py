"""node_exporter textfile-collector files for the timers' oneshots (compact, sync, retention).

Why textfiles: a oneshot has no process to scrape between runs, so each run
leaves `fluxforge_<job>.prom` in `metrics.textfile_dir` and node_exporter
serves it until the next run replaces it.  The file is written under a hidden
temp name, fsync'd and renamed over the old one (`fsio.atomic_path`), so a
scrape never sees half a file (the convention of node-exporter-textfile-
collector-scripts: atomic temp + rename, one file per job), and made world-
readable because node_exporter runs as its own user.

A run always records when it finished, how long it took and its outcome; the
last *successful* run's time is carried over from the previous file when this
run failed, so "last success" survives failures.  Writing metrics never fails
the job: an unwritable directory is logged and the job's exit code stands.
"""
from __future__ import annotations

import errno
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ..fsio import atomic_path
from ..logs import get_logger
from . import metric_defs as M

log = get_logger("fluxforge.metrics")


def textfile_path(directory: Path, job: str) -> Path:
    return Path(directory) / f"fluxforge_{job}.prom"


class JobRun:
    """The metrics of one oneshot run; `set()` its counts, `outcome` defaults to success unless it raised."""

    def __init__(self, job: str):
        if job not in M.JOBS:
            raise ValueError(f"unknown job {job!r}")
        self.job = job
        self.registry = CollectorRegistry()
        self.outcome: str | None = None
        self.started = time.time()
        self._gauges: dict[str, Gauge] = {}

    def _gauge(self, d: M.MetricDef) -> Gauge:
        g = self._gauges.get(d.name)
        if g is None:
            g = self._gauges[d.name] = Gauge(d.name, d.help, list(d.labels), registry=self.registry)
        return g

    def set(self, d: M.MetricDef, value: float, *labels: str) -> None:
        g = self._gauge(d)
        (g.labels(*labels) if labels else g).set(value)

    def finish(self, outcome: str, last_success: float | None) -> None:
        now = time.time()
        self.set(M.JOB_LAST_RUN, now, self.job)
        self.set(M.JOB_DURATION, now - self.started, self.job)
        for o in M.OUTCOMES:
            self.set(M.JOB_OUTCOME, 1.0 if o == outcome else 0.0, self.job, o)
        if outcome == "success":
            last_success = now
        if last_success is not None:
            self.set(M.JOB_LAST_SUCCESS, last_success, self.job)


def previous_last_success(path: Path, job: str) -> float | None:
    """`fluxforge_task_last_success_timestamp_seconds{task=...}` from the file a previous run left, if any."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):  # gone, or bytes that are not text: start over
        return None
    try:
        for fam in text_string_to_metric_families(text):
            if fam.name == M.JOB_LAST_SUCCESS.name:
                for s in fam.samples:
                    if s.labels.get("task") == job:
                        return float(s.value)
    except ValueError:  # a file someone else wrote badly: start over
        return None
    return None


def write_job(directory: Path, run: JobRun, outcome: str) -> Path | None:
    """Finish `run` and write its textfile atomically; None (and a log line) when that is impossible."""
    path = textfile_path(directory, run.job)
    run.finish(outcome, previous_last_success(path, run.job))
    try:
        if not Path(directory).is_dir():  # node_exporter not installed: its directory is not ours to create
            raise FileNotFoundError(errno.ENOENT, "no such directory", str(directory))
        with atomic_path(path) as tmp:
            tmp.write_bytes(generate_latest(run.registry))
            tmp.chmod(0o644)  # node_exporter runs as another user; the services' UMask is 0027
    except OSError as e:
        log.warning("metrics_textfile_failed", job=run.job, path=str(path), error=e.strerror or str(e),
                    hint="create metrics.textfile_dir writable by the fluxforge user, or set metrics.enabled: false")
        return None
    return path


@contextmanager
def job_metrics(cfg, job: str, enabled: bool = True) -> Iterator[JobRun]:
    """Around a oneshot: yields a JobRun to fill; writes the textfile on the way out, whatever happened.

    `enabled=False` (a dry run) writes nothing.  The outcome is `run.outcome` if the job set it, else failure when an exception
    (including SystemExit with a non-zero code) left the block, else success.
    """
    run = JobRun(job)
    outcome = "failure"
    try:
        yield run
        outcome = run.outcome or "success"
    except SystemExit as e:
        outcome = run.outcome or ("success" if not e.code else "failure")
        raise
    finally:
        if enabled and cfg.metrics.enabled:
            write_job(cfg.metrics.textfile_dir, run, outcome)
