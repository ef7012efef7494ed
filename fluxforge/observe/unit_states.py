"""State of the FluxForge systemd units, as `systemctl show` reports them.

Why `systemctl show` and not D-Bus: it is always there when systemd is, its
KEY=value output is a stable interface, and it needs no Python binding on the
Pi.  When systemd is not the init system (a laptop, a container, CI) the caller
gets None and `fluxforge status` simply leaves the section out.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SERVICES = ("fluxforge-collector.service", "fluxforge-etl.service")
# The timers whose jobs work on data_dir, and fluxforge-revive's, which only asks systemd to start units.
DATA_TIMERS = ("fluxforge-compact.timer", "fluxforge-sync.timer")
TIMERS = DATA_TIMERS + ("fluxforge-revive.timer",)
# The oneshot services the timers start: their last run's Result matters, not ActiveState.
TIMER_JOBS = tuple(t.replace(".timer", ".service") for t in TIMERS)
DATA_JOBS = TIMER_JOBS[:len(DATA_TIMERS)]
UNITS = SERVICES + TIMERS + TIMER_JOBS
PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "Result", "UnitFileState",
              "StateChangeTimestamp", "NRestarts", "StatusText")


def systemd_present() -> bool:
    """True when systemd is PID 1 (sd_booted()'s test) and systemctl exists."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def parse_show(text: str) -> list[dict[str, str]]:
    """Split `systemctl show` output for several units (blank-line separated KEY=value blocks)."""
    units, cur = [], {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                units.append(cur)
                cur = {}
            continue
        key, _, value = line.partition("=")
        cur[key] = value
    if cur:
        units.append(cur)
    return units


def unit_states(units: tuple[str, ...] = UNITS, timeout: float = 10.0) -> list[dict[str, str]] | None:
    """The properties of each unit, or None when systemd is absent or does not answer."""
    if not systemd_present():
        return None
    try:
        proc = subprocess.run(["systemctl", "show", "--no-pager", "--property=" + ",".join(PROPERTIES), *units],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 and not proc.stdout:
        return None
    return [{k.lower(): v for k, v in u.items()} for u in parse_show(proc.stdout)]


def unit_problem(unit: dict[str, str]) -> tuple[str, str] | None:
    """(severity, description) when a unit needs attention, else None.

    Not-installed units are fine (a dev box); a failed unit is critical; a
    long-running service or timer that is enabled but not active is a warning;
    a timer's oneshot job is only judged by the Result of its last run.
    """
    if unit.get("loadstate") != "loaded":
        return None
    uid, active, result = unit.get("id", "?"), unit.get("activestate"), unit.get("result", "success")
    if active == "failed":
        return "critical", f"{uid} has failed (result: {result})"
    if uid in TIMER_JOBS:
        return ("warning", f"{uid}: last run ended with result {result}") if result not in ("success", "") else None
    if active not in ("active", "activating", "reloading") and unit.get("unitfilestate") in ("enabled", "static"):
        return "warning", f"{uid} is {active} ({unit.get('substate', '?')}) although enabled"
    return None
