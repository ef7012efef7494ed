"""Start again a long-running service that systemd gave up on (fluxforge-revive.timer).

Why: the collector and the ETL restart themselves after a crash (`Restart=on-failure`), and
`StartLimitBurst=5` in 10 minutes stops a crash loop from hammering an exchange.  But on
systemd 252 (bookworm) a unit that hit that limit stays `failed` until someone runs
`systemctl reset-failed`: a box on a shelf would stop collecting for good over something
that time fixes (memory pressure, a disk that comes back, an exchange that stops sending
what trips a bug) or that an operator fixes without thinking of systemd (a config edited
back to valid, a second instance stopped).  systemd 254's `RestartSteps=`/`RestartMaxDelaySec=`
would space the restarts out instead; this is that slow retry for 252: every run of the
timer, each FluxForge service that is `failed` while the appliance is meant to be up
(`fluxforge.target` active, the service enabled) is reset and started once more.  A cause
that persists fails it again within a few starts, so the exchange sees at most a burst per
period, the journal and `unit_failed` alert keep saying why, and the box resumes by itself
the period after the cause is gone.  A service the operator stopped is `inactive`, never
`failed` (or, if its stop outlasted TimeoutStopSec=, failed with result `timeout`, which is
left alone too), and a disabled one is left alone.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

from ..observe.unit_states import SERVICES, unit_states

TARGET = "fluxforge.target"
ENABLED = ("enabled", "enabled-runtime")


@dataclass
class Decision:
    """What to do with one failed service, and why; `error`: the start systemd refused."""
    unit: str
    revive: bool
    why: str
    error: str = ""


def decide(states: list[dict[str, str]]) -> list[Decision]:
    """A decision for each failed service, from `unit_states` of the target and the services."""
    by_id = {s.get("id"): s for s in states}
    target = by_id.get(TARGET, {})
    out = []
    for unit in SERVICES:
        s = by_id.get(unit, {})
        if s.get("loadstate") != "loaded" or s.get("activestate") != "failed":
            continue
        if target.get("activestate") != "active":
            out.append(Decision(unit, False, f"failed ({s.get('result', '?')}), but {TARGET} is "
                                             f"{target.get('activestate', 'not loaded')}: the appliance is stopped"))
        elif s.get("unitfilestate") not in ENABLED:
            out.append(Decision(unit, False, f"failed ({s.get('result', '?')}), but {s.get('unitfilestate', '?')}"))
        elif s.get("result") == "timeout":
            # a stop that outlasted TimeoutStopSec= (SIGKILLed: an operator's stop, not a crash), or a
            # start that outlasted TimeoutStartSec=, which Restart= retries itself and cannot repeat
            # StartLimitBurst= times within StartLimitIntervalSec= at the units' settings
            out.append(Decision(unit, False, "failed by a timeout (a stop that took too long, or a start): "
                                             "not a crash loop, left to the operator"))
        else:
            out.append(Decision(unit, True, f"failed (result: {s.get('result', '?')}, "
                                            f"since {s.get('statechangetimestamp') or '?'})"))
    return out


def revive(dry_run: bool = False) -> list[Decision] | None:
    """Reset and start (without waiting) every failed service `decide` picks; the decisions, None when
    systemd is absent."""
    states = unit_states((TARGET, *SERVICES))
    if states is None:
        return None
    decisions = decide(states)
    for d in decisions:
        if d.revive and not dry_run:
            # reset-failed also clears the start-rate counter, so the start is not refused at once;
            # --no-block: a notify service may take minutes to be ready, and says so itself.
            subprocess.run(["systemctl", "reset-failed", d.unit], check=False, timeout=30)
            started = subprocess.run(["systemctl", "start", "--no-block", d.unit], check=False, timeout=30,
                                     capture_output=True, text=True)
            if started.returncode != 0:
                d.error = started.stderr.strip() or f"systemctl start exited {started.returncode}"
    return decisions
