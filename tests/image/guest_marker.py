#!/usr/bin/python3
"""Test-only guest side of the image boot test (written into a copy of the image, never shipped).

Why: the host sees a TCG guest only through its serial console and its disk, so this unit
gathers what the test asserts -- the first-boot result, `systemctl` state and STATUS= of
every FluxForge unit, a segment reaching done/, a sync run, `journalctl EVENT=` -- into one
`FFMARKER {json}` line on the serial console (ttyS0 on amd64, ttyAMA0 on arm64's virt board), then powers the guest off so QEMU exits.
"""
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

UNITS = ("fluxforge-firstboot.service", "fluxforge.target", "fluxforge-collector.service",
         "fluxforge-etl.service", "fluxforge-sync.service", "fluxforge-sync.timer", "ssh.service")
DONE = Path("/var/lib/fluxforge/segments/done")
WAIT_FOR_SEGMENT = 420


def show(unit):
    out = subprocess.run(["systemctl", "show", unit, "-p", "ActiveState,SubState,Result,StatusText"],
                         capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def reachable(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        return True
    except OSError:
        return False


def network_probe():
    """The forwarded moto port answers at the forward address, and nowhere else (restrict=on)."""
    m = re.search(r"endpoint_url: http://([0-9.]+):(\d+)", Path("/etc/fluxforge/config.yaml").read_text())
    if not m:
        return {}
    port = int(m.group(2))
    return {"forwarded": reachable(m.group(1), port), "host_gateway": reachable("10.0.2.2", port),
            "internet": reachable("1.1.1.1", 443)}


def serial_console():
    """The last serial console= of the kernel command line (the one QEMU writes to a file)."""
    consoles = re.findall(r"console=(tty[A-Za-z]+\d+)", Path("/proc/cmdline").read_text())
    return "/dev/" + (consoles[-1] if consoles else "ttyS0")


def root_bytes():
    st = os.statvfs("/")
    return st.f_blocks * st.f_frsize


def settled(unit):
    return show(unit).get("ActiveState") not in ("activating", "deactivating", "reloading")


def main():
    started = time.monotonic()
    report = {"firstboot": show("fluxforge-firstboot.service")}
    if report["firstboot"].get("ActiveState") == "active":
        deadline = time.monotonic() + WAIT_FOR_SEGMENT
        while time.monotonic() < deadline and not list(DONE.glob("seg-*")):
            time.sleep(2)
        report["done_segments"] = len(list(DONE.glob("seg-*")))
        sync = subprocess.run(["systemctl", "start", "fluxforge-sync.service"], capture_output=True, text=True)
        report["sync_start_rc"] = sync.returncode
        events = subprocess.run(["journalctl", "--no-pager", "-o", "json", "-u", "fluxforge-collector",
                                 "EVENT=segment_rotated"], capture_output=True, text=True).stdout
        report["network"] = network_probe()
        report["segment_rotated_events"] = [json.loads(line).get("SEGMENT") for line in events.splitlines()
                                            if line.startswith("{")]
    else:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(settled(u) for u in UNITS):
            time.sleep(1)
    report["units"] = {u: show(u) for u in UNITS}
    report["machine_id"] = Path("/etc/machine-id").read_text().strip()
    report["ssh_host_keys"] = sorted(p.name for p in Path("/etc/ssh").glob("ssh_host_*_key"))
    report["hostname"] = Path("/etc/hostname").read_text().strip()
    report["root_bytes"] = root_bytes()
    report["uptime"] = float(Path("/proc/uptime").read_text().split()[0])
    report["marker_seconds"] = round(time.monotonic() - started, 1)
    with open(serial_console(), "w") as tty:
        tty.write("\nFFMARKER " + json.dumps(report) + "\n")
        tty.flush()
    subprocess.run(["systemctl", "poweroff", "--no-block"])


if __name__ == "__main__":
    main()
