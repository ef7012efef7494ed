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

import re
from pathlib import Path

import pytest
import yaml

import image_boot
import image_disk
from image_boot import KEY, guest_config
from qemu_vm import QemuVM

ROOT_OFFSET = image_disk.MIB + image_disk.ESP_MIB * image_disk.MIB


def debugfs(disk: Path, *commands: str, write: bool = False) -> str:
    return image_boot.debugfs(disk, ROOT_OFFSET, *commands, write=write)


def root_file(disk: Path, path: str) -> str:
    return image_boot.root_file(disk, ROOT_OFFSET, path)


def esp(disk: Path) -> str:
    return image_disk.esp_in_disk(disk)


@pytest.fixture(scope="module")
def disk(amd64_image, tmp_path_factory) -> Path:
    """A copy of the image with the test-only marker unit written into its root file system."""
    return image_boot.copy_with_marker(amd64_image, Path(tmp_path_factory.mktemp("vm")), ROOT_OFFSET)


@pytest.fixture(scope="module")
def forwards(loopback, moto_s3) -> list[int]:
    return image_boot.forward_ports(loopback, moto_s3)


def boot(disk: Path, forwards: list[int], timeout: float) -> dict:
    return image_boot.boot(QemuVM(disk, disk.parent, forwards), timeout)


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
    image_boot.assert_appliance_ran(report, moto_s3, esp(disk))
