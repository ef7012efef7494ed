"""fluxforge-revive's choice of what to start again, from `systemctl show` output as systemd 252 prints it.
The real thing -- a service that hit its start limit in a booted systemd, started again by the unit --
is tests/appliance/test_2_boot.py::test_4b_revive_starts_a_service_that_hit_its_start_limit_again."""
from __future__ import annotations

from fluxforge.maintenance.revive import decide
from fluxforge.observe.unit_states import parse_show


def _show(target="active", collector=("active", "success", "enabled"), etl=("active", "success", "enabled")):
    blocks = [f"Id=fluxforge.target\nLoadState=loaded\nActiveState={target}\nResult=success\nUnitFileState=enabled\n"]
    for unit, (active, result, enabled) in (("fluxforge-collector.service", collector), ("fluxforge-etl.service", etl)):
        blocks.append(f"Id={unit}\nLoadState=loaded\nActiveState={active}\nSubState=x\nResult={result}\n"
                      f"UnitFileState={enabled}\nStateChangeTimestamp=Mon 2026-12-07 11:00:00 UTC\n")
    return [{k.lower(): v for k, v in u.items()} for u in parse_show("\n".join(blocks))]


def test_running_services_are_left_alone():
    assert decide(_show()) == []


def test_a_service_that_hit_its_start_limit_is_started_again():
    [d] = decide(_show(etl=("failed", "start-limit-hit", "enabled")))  # a manual start refused by the limit
    assert (d.unit, d.revive) == ("fluxforge-etl.service", True)
    assert "start-limit-hit" in d.why and "2026-12-07 11:00:00" in d.why


def test_every_kind_of_failure_is_started_again():
    """A bad config (78) or a second instance (73) too: the operator's fix is then picked up without them."""
    for result in ("exit-code", "signal", "watchdog", "oom-kill", "core-dump"):
        ds = decide(_show(collector=("failed", result, "enabled"), etl=("failed", result, "enabled-runtime")))
        assert [(d.unit, d.revive) for d in ds] == [("fluxforge-collector.service", True),
                                                    ("fluxforge-etl.service", True)], result


def test_a_stopped_appliance_or_a_disabled_service_is_left_alone():
    [d] = decide(_show(target="inactive", collector=("failed", "exit-code", "enabled")))
    assert not d.revive and "appliance is stopped" in d.why
    [d] = decide(_show(collector=("failed", "exit-code", "disabled")))
    assert not d.revive and "disabled" in d.why
    # stopped by the operator: inactive, not failed
    assert decide(_show(collector=("inactive", "success", "enabled"))) == []


def test_units_that_are_not_installed_are_skipped():
    states = _show(etl=("failed", "exit-code", "enabled"))
    states[2]["loadstate"] = "not-found"
    assert decide(states) == []


def test_a_stop_that_timed_out_is_left_alone():
    """`systemctl stop` of a service that did not exit within TimeoutStopSec=: SIGKILLed, failed with
    result timeout. The operator stopped it: it must not come back 15 minutes later."""
    [d] = decide(_show(etl=("failed", "timeout", "enabled")))
    assert not d.revive and "timeout" in d.why
