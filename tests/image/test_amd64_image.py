"""The amd64 appliance image, built by `make image`'s code and booted in QEMU (TCG, OVMF).

Steps in order on one copy of the image (each needs the previous): what the image holds,
read without booting; first boot with a bad config on the ESP (config.error.txt appears
there naming the field, the services stay down); the config fixed on the ESP with mcopy
as a user would on their laptop, next boot: collector and ETL active with STATUS= lines,
segments from the host's loopback exchange reach done/, a sync lands in moto on the host,
`journalctl EVENT=` works, the secrets are gone from the ESP.  The guest's only network
is QEMU's guestfwd to those two servers.  A test-only unit (guest_marker.py, written into
the copy with debugfs) reports on the serial console and powers the guest off.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import image_disk
from qemu_vm import GUEST_HOST_IP, QemuVM

HOST_ID = "imagetest"
BUCKET = "fluxforge-imagetest"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz6bI1n3ZTvYy0Yk0bq7Jd3m0Y6QeJb3sJ7mKqXh2Vx user@laptop"
ROOT_OFFSET = image_disk.MIB + image_disk.ESP_MIB * image_disk.MIB
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


def debugfs(disk: Path, *commands: str, write: bool = False) -> str:
    argv = ["debugfs", *(["-w"] if write else []), f"{disk}?offset={ROOT_OFFSET}"]
    proc = subprocess.run(argv, input="".join(c + "\n" for c in commands), capture_output=True, text=True,
                          check=True)
    return proc.stdout


def root_file(disk: Path, path: str) -> str:
    return subprocess.run(["debugfs", "-R", f"cat {path}", f"{disk}?offset={ROOT_OFFSET}"], capture_output=True,
                          text=True, check=True).stdout


def esp(disk: Path) -> str:
    return image_disk.esp_in_disk(disk)


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


@pytest.fixture(scope="module")
def disk(amd64_image, tmp_path_factory) -> Path:
    """A copy of the image with the test-only marker unit written into its root file system."""
    work = Path(tmp_path_factory.mktemp("vm"))
    copy = work / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(amd64_image), str(copy)], check=True)
    (work / "marker.py").write_bytes((Path(__file__).parent / "guest_marker.py").read_bytes())
    (work / "marker.py").chmod(0o755)
    (work / "marker.service").write_text(MARKER_UNIT)
    debugfs(copy, f"write {work / 'marker.py'} /usr/local/sbin/fluxforge-test-marker",
            f"write {work / 'marker.service'} /etc/systemd/system/fluxforge-test-marker.service",
            "symlink /etc/systemd/system/multi-user.target.wants/fluxforge-test-marker.service "
            "/etc/systemd/system/fluxforge-test-marker.service", write=True)
    return copy


@pytest.fixture(scope="module")
def forwards(loopback, moto_s3) -> list[int]:
    ports = {port_of(moto_s3.endpoint)}
    ports |= {port_of(u) for u in re.findall(r"https?://[^\"' ]+|wss?://[^\"' ]+",
                                            json.dumps(loopback.ccxt_config("binance")))}
    moto_s3.client().create_bucket(Bucket=BUCKET)
    return sorted(ports)


def boot(disk: Path, forwards: list[int], timeout: float) -> dict:
    vm = QemuVM(disk, disk.parent, forwards).start()
    try:
        seconds = vm.wait_exit(timeout)
    finally:
        vm.kill()
        shutil.copyfile(vm.serial, Path(__file__).resolve().parents[2] / "out" / "image" / f"serial-{int(time.time())}.log")
    # The line may follow a getty prompt that has no newline.
    found = re.findall(r"FFMARKER (\{.*\})", vm.console())
    assert found, f"no marker line on the console; tail:\n{vm.console()[-4000:]}"
    report = json.loads(found[-1])
    report["boot_wall_seconds"] = round(seconds)
    print(f"boot: {seconds:.0f} s wall, guest uptime {report['uptime']:.0f} s at the marker")
    return report


def test_0_image_holds_what_a_flashed_card_needs(disk):
    loader = image_disk.read_fat_file(esp(disk), "loader/entries/fluxforge.conf").decode()
    assert f"root=UUID={image_disk.ROOT_FS_UUID}" in loader and "console=ttyS0" in loader
    assert image_disk.read_fat_file(esp(disk), "EFI/BOOT/BOOTX64.EFI")
    assert b"config.error.txt" in image_disk.read_fat_file(esp(disk), "fluxforge/README.txt")
    assert root_file(disk, "/etc/machine-id") == ""
    assert "ssh_host_" not in debugfs(disk, "ls /etc/ssh")
    shadow = root_file(disk, "/etc/shadow")
    assert all(line.split(":")[1] in ("*", "!", "!*", "") for line in shadow.splitlines()), "a password is set"
    assert "SystemMaxUse=1G" in root_file(disk, "/etc/systemd/journald.conf.d/50-appliance.conf")
    wants = debugfs(disk, "ls /etc/systemd/system/multi-user.target.wants")
    assert "fluxforge.target" in wants and "fluxforge-firstboot.service" in wants
    assert "x-systemd.growfs" in root_file(disk, "/etc/fstab")


def test_1_bad_config_on_the_esp_keeps_services_down(disk, forwards, loopback, moto_s3):
    cfg = guest_config(loopback, moto_s3)
    bad = {**cfg, "etl": {"reorder_windw": 1}}
    image_disk.mcopy_files(esp(disk), {
        "fluxforge/config.yaml": yaml.safe_dump(bad).encode(),
        "fluxforge/credentials/s3_key_id": b"image-key", "fluxforge/credentials/s3_secret": b"image-secret",
        "fluxforge/authorized_keys": (KEY + "\n").encode(), "fluxforge/hostname": b"imagebox\n"})
    report = boot(disk, forwards, timeout=600)  # hang guards: typically 90 s and 220 s here
    assert report["firstboot"]["ActiveState"] == "failed", report
    for unit in ("fluxforge.target", "fluxforge-collector.service", "fluxforge-etl.service"):
        assert report["units"][unit]["ActiveState"] == "inactive", (unit, report["units"][unit])
    error = image_disk.read_fat_file(esp(disk), "fluxforge/config.error.txt")
    assert error is not None, "no config.error.txt on the ESP"
    assert "etl.reorder_windw: unknown key" in error.decode(), error
    assert image_disk.read_fat_file(esp(disk), "fluxforge/credentials/s3_secret") == b"image-secret"
    # First boot made this machine's own identity, and SSH access does not wait for a valid config.
    assert re.fullmatch(r"[0-9a-f]{32}", report["machine_id"]), report["machine_id"]
    assert report["ssh_host_keys"], "no SSH host keys generated at first boot"
    assert report["units"]["ssh.service"]["ActiveState"] == "active"
    assert report["hostname"] == "imagebox"


def test_2_fixed_config_runs_the_appliance_on_the_next_boot(disk, forwards, loopback, moto_s3):
    image_disk.mcopy_files(esp(disk), {"fluxforge/config.yaml": yaml.safe_dump(guest_config(loopback, moto_s3)).encode()})
    report = boot(disk, forwards, timeout=900)
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
    assert image_disk.read_fat_file(esp(disk), "fluxforge/config.error.txt") is None
    assert image_disk.read_fat_file(esp(disk), "fluxforge/credentials/s3_secret") is None, \
        "the secret stayed on the FAT partition"
    assert image_disk.read_fat_file(esp(disk), "fluxforge/config.yaml"), "the config left the ESP"
