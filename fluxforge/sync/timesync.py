"""Wait for a synchronised clock before talking to S3.

Why: a Raspberry Pi has no RTC; after a power cut it boots in the past until
systemd-timesyncd reaches an NTP server, and every SigV4-signed request then
fails with RequestTimeTooSkewed / SignatureDoesNotMatch.  timesyncd creates
`/run/systemd/timesync/synchronized` once the clock is set, so on a systemd
host that runs timesyncd we wait for that file (bounded) and otherwise skip the
run with a clear log line; the timer simply tries again later.  Hosts without
timesyncd (chrony, containers, CI) are not gated.
"""
from __future__ import annotations

import time
from pathlib import Path

SYNCHRONIZED_FLAG = Path("/run/systemd/timesync/synchronized")
SYSTEMD_RUNTIME = Path("/run/systemd/system")
TIMESYNCD_BINARIES = (Path("/lib/systemd/systemd-timesyncd"), Path("/usr/lib/systemd/systemd-timesyncd"))


def clock_gated() -> bool:
    """True when this host boots with systemd and has timesyncd, i.e. the flag file is meaningful."""
    return SYSTEMD_RUNTIME.is_dir() and any(p.exists() for p in TIMESYNCD_BINARIES)


def wait_for_clock(timeout: float, poll: float = 1.0) -> bool:
    """True once the clock is known to be synchronised (or cannot be known); False after `timeout`."""
    if not clock_gated():
        return True
    deadline = time.monotonic() + timeout
    while not SYNCHRONIZED_FLAG.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))
    return True
