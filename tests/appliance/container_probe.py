"""Read systemd's view of a booted test container: unit properties, journal events, polling.

Why a module: the boot test and the Ansible test assert the same things about a
running appliance (target up, services running with STATUS=, timers listed), so
they share these probes instead of parsing `systemctl` output twice.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

LONG_RUNNING = ("fluxforge-collector.service", "fluxforge-etl.service")
TIMERS = ("fluxforge-compact.timer", "fluxforge-sync.timer", "fluxforge-revive.timer")
ONESHOTS = ("fluxforge-compact.service", "fluxforge-sync.service", "fluxforge-revive.service")
ALL_UNITS = ("fluxforge.target", *LONG_RUNNING, *ONESHOTS, *TIMERS)


def unit_props(container, unit: str, *names: str) -> dict[str, str]:
    out = container.run(["systemctl", "show", unit, *[f"--property={n}" for n in names]]).stdout
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {n: props.get(n, "") for n in names}


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 1.0) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def journal(container, *matches: str, unit: str | None = None) -> list[dict]:
    """Journal entries as dicts (`journalctl -o json`), filtered by unit and FIELD=value matches."""
    argv = ["journalctl", "--no-pager", "-o", "json", *(["-u", unit] if unit else []), *matches]
    out = container.run(argv, check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def running_with_status(container, unit: str) -> str | None:
    """The STATUS= text if `unit` is active (running) and has one, else None."""
    p = unit_props(container, unit, "ActiveState", "SubState", "StatusText")
    if p["ActiveState"] == "active" and p["SubState"] == "running" and p["StatusText"]:
        return p["StatusText"]
    return None


def assert_appliance_up(container, timeout: float = 180.0) -> dict[str, str]:
    """fluxforge.target active and enabled, both services running with STATUS= shown by
    `systemctl status`, both timers waiting; returns each service's status line."""
    wait_for(lambda: unit_props(container, "fluxforge.target", "ActiveState")["ActiveState"] == "active",
             timeout, "fluxforge.target active")
    assert container.run(["systemctl", "is-enabled", "fluxforge.target"]).stdout.strip() == "enabled"
    statuses = {}
    for unit in LONG_RUNNING:
        statuses[unit] = wait_for(lambda u=unit: running_with_status(container, u), timeout,
                                  f"{unit} active (running) with a STATUS= line")
        shown = container.run(["systemctl", "status", "--no-pager", "--lines=0", unit], check=False).stdout
        assert "active (running)" in shown, shown
        assert "Status:" in shown, f"systemctl status {unit} shows no STATUS= line:\n{shown}"
    for timer in TIMERS:
        p = unit_props(container, timer, "ActiveState", "SubState")
        assert (p["ActiveState"], p["SubState"]) == ("active", "waiting"), f"{timer}: {p}"
    return statuses


@contextmanager
def booted_container(boot_root: Path, prefix: str, logs: Path) -> Iterator:
    """A booted container for a test module; its journal is saved to `logs` when it stops."""
    import buildroot

    container = buildroot.BootedContainer(boot_root, prefix=prefix, log_dir=logs)
    container.start()
    try:
        yield container
    finally:
        if container.init_pid:
            dump = container.run(["journalctl", "--no-pager", "-n", "2000"], check=False)
            (logs / "journal.txt").write_text(dump.stdout)
        container.stop()
