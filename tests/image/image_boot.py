"""What the amd64 and the Raspberry Pi image boot tests share: reading and writing the root file
system inside a disk image with debugfs, the test-only marker unit, the guest's config and
network forwards, and one boot that ends in the marker's report.

Why a module: both images are booted the same way (a copy of the image, the marker written
into it, a config on the FAT partition, QEMU with forwards to the host's loopback exchange
and moto); only the partition offsets and the QEMU machine differ.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import image_disk
from qemu_vm import GUEST_HOST_IP, QemuVM

HOST_ID = "imagetest"
BUCKET = "fluxforge-imagetest"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz6bI1n3ZTvYy0Yk0bq7Jd3m0Y6QeJb3sJ7mKqXh2Vx user@laptop"
OUT = Path(__file__).resolve().parents[2] / "out" / "image"
MARKER_UNIT = """[Unit]
Description=FluxForge image test marker (test only, never shipped)
After=fluxforge-firstboot.service fluxforge-collector.service fluxforge-etl.service ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/python3 /usr/local/sbin/fluxforge-test-marker
TimeoutStartSec=15min

[Install]
WantedBy=multi-user.target
"""


def host_tools(flag: str, tools: tuple[str, ...]) -> None:
    """The host packages of `install-host-deps.sh <flag>` (root only: skips the test otherwise)."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("the image test needs root (mmdebstrap, systemd-nspawn); CI runs as root")
    subprocess.run([str(OUT.parents[1] / "packaging/install-host-deps.sh"), flag], check=True)
    for tool in tools:
        assert shutil.which(tool), f"{tool} missing after install-host-deps.sh {flag}"


def fluxforge_deb(arch: str, out: Path) -> Path:
    """$FLUXFORGE_TEST_DEB (amd64) / $FLUXFORGE_TEST_DEB_ARM64 when set, else a fresh .deb built into `out`."""
    prebuilt = os.environ.get("FLUXFORGE_TEST_DEB" + ("" if arch == "amd64" else f"_{arch.upper()}"))
    if prebuilt:
        return Path(prebuilt).resolve()
    import build_deb

    return build_deb.build(arch, out / "dist", lintian=False)


def debugfs(disk: Path, offset: int, *commands: str, write: bool = False) -> str:
    argv = ["debugfs", *(["-w"] if write else []), f"{disk}?offset={offset}"]
    proc = subprocess.run(argv, input="".join(c + "\n" for c in commands), capture_output=True, text=True,
                          check=True)
    return proc.stdout


def root_file(disk: Path, offset: int, path: str) -> str:
    return subprocess.run(["debugfs", "-R", f"cat {path}", f"{disk}?offset={offset}"], capture_output=True,
                          text=True, check=True).stdout


def copy_with_marker(image: Path, work: Path, offset: int) -> Path:
    """A sparse copy of `image` with the test-only marker unit written into its root file system."""
    copy = work / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(copy)], check=True)
    (work / "marker.py").write_bytes((Path(__file__).parent / "guest_marker.py").read_bytes())
    (work / "marker.py").chmod(0o755)
    (work / "marker.service").write_text(MARKER_UNIT)
    debugfs(copy, offset, f"write {work / 'marker.py'} /usr/local/sbin/fluxforge-test-marker",
            f"write {work / 'marker.service'} /etc/systemd/system/fluxforge-test-marker.service",
            "symlink /etc/systemd/system/multi-user.target.wants/fluxforge-test-marker.service "
            "/etc/systemd/system/fluxforge-test-marker.service", write=True)
    return copy


def guest_config(loopback, moto_s3) -> dict:
    """The appliance boot test's config, with the host's 127.0.0.1 ports seen at the guestfwd address."""
    ccxt = json.loads(json.dumps(loopback.ccxt_config("binance")).replace("127.0.0.1", GUEST_HOST_IP)
                      .replace("localhost", GUEST_HOST_IP))
    return {
        "data_dir": "/var/lib/fluxforge", "host_id": HOST_ID,
        "exchanges": [{"name": "binance", "ccxt": ccxt, "symbols": ["BTC/USDT", "ETH/USDT"], "book_depth": 20}],
        "collector": {"flush_interval": 0.5, "segment_max_seconds": 8},
        "etl": {"reorder_window": 1},
        "sync": {"enabled": True, "bucket": BUCKET, "region": "us-east-1", "addressing_style": "path",
                 "endpoint_url": moto_s3.endpoint.replace("127.0.0.1", GUEST_HOST_IP),
                 "aws_access_key_id": "${credential:fluxforge_s3_key_id}",
                 "aws_secret_access_key": "${credential:fluxforge_s3_secret}",
                 # No NTP server is reachable from the guest; QEMU's RTC is the host's clock.
                 "require_time_sync": False},
    }


def port_of(url: str) -> int:
    return int(re.search(r":(\d+)", url.split("//", 1)[-1]).group(1))


def forward_ports(loopback, moto_s3) -> list[int]:
    """The host ports the guest may reach (loopback exchange and moto); creates the test bucket."""
    ports = {port_of(moto_s3.endpoint)}
    ports |= {port_of(u) for u in re.findall(r"https?://[^\"' ]+|wss?://[^\"' ]+",
                                            json.dumps(loopback.ccxt_config("binance")))}
    moto_s3.client().create_bucket(Bucket=BUCKET)
    return sorted(ports)


def boot(vm: QemuVM, timeout: float) -> dict:
    """Run `vm` until the guest powers off; returns the marker's report (serial log kept in out/image/)."""
    vm.start()
    try:
        seconds = vm.wait_exit(timeout)
    finally:
        vm.kill()
        OUT.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vm.serial, OUT / f"serial-{vm.disk.parent.name}-{int(time.time())}.log")
    # The line may follow a getty prompt that has no newline.
    found = re.findall(r"FFMARKER (\{.*\})", vm.console())
    assert found, f"no marker line on the console; tail:\n{vm.console()[-4000:]}"
    report = json.loads(found[-1])
    report["boot_wall_seconds"] = round(seconds)
    print(f"boot: {seconds:.0f} s wall, guest uptime {report['uptime']:.0f} s at the marker")
    return report


def assert_appliance_ran(report: dict, moto_s3, fat: str) -> None:
    """A boot with a good config on the FAT partition (`fat`: its mtools spec): first boot imported it,
    collector and ETL run and report, data flowed from the loopback exchange to done/ and to moto through
    the forwards only, and the secrets left the FAT partition."""
    assert report["firstboot"]["ActiveState"] == "active", report
    for unit in ("fluxforge-collector.service", "fluxforge-etl.service"):
        u = report["units"][unit]
        assert (u["ActiveState"], u["SubState"]) == ("active", "running"), (unit, u)
        assert u["StatusText"], f"{unit} has no STATUS= line"
    assert report["network"] == {"forwarded": True, "host_gateway": False, "internet": False}, report["network"]
    assert report["done_segments"] > 0, report
    assert report["segment_rotated_events"] and all(s.startswith(f"seg-{HOST_ID}-")
                                                    for s in report["segment_rotated_events"]), report
    assert report["sync_start_rc"] == 0 and report["units"]["fluxforge-sync.service"]["Result"] == "success", report
    keys = moto_s3.keys(BUCKET)
    assert any(HOST_ID in k and k.endswith(".parquet") for k in keys), keys[:10]
    assert image_disk.read_fat_file(fat, "fluxforge/config.error.txt") is None
    assert image_disk.read_fat_file(fat, "fluxforge/credentials/s3_secret") is None, \
        "the secret stayed on the FAT partition"
    assert image_disk.read_fat_file(fat, "fluxforge/config.yaml"), "the config left the boot partition"
