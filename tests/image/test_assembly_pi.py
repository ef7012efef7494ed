"""The Pi card's mount-free assembly (packaging/image_disk_pi.py) on a stand-in root and firmware folder.

Seconds, no emulation, but opt-in with the rest of the Pi image tests (`make test-image-arm64`;
`make test` runs only the amd64 image's tests): the MBR layout the Pi 3's boot ROM needs, the
labels cmdline.txt and fstab name, the firmware folder on RASPIFIRM, the same bytes from the same
tree, and a clear refusal of a firmware folder that would not boot.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

import image_disk
import image_disk_pi

pytestmark = pytest.mark.skipif(not os.environ.get("FLUXFORGE_TEST_IMAGE_ARM64"),
                                reason="opt-in: `make test-image-arm64`")
EPOCH = 1795222800


def fake_tree(tmp: Path, cmdline: str = "console=tty0 console=ttyS1,115200 root=LABEL=RASPIROOT rw rootwait\n"):
    root, firmware = tmp / "root", tmp / "firmware"
    (root / "boot/firmware").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/fstab").write_text(image_disk_pi.fstab())
    firmware.mkdir()
    for name in image_disk_pi.REQUIRED_FILES + image_disk_pi.REQUIRED_DTBS + ["vmlinuz-6.1.0-1-arm64",
                                                                             "initrd.img-6.1.0-1-arm64"]:
        (firmware / name).write_bytes(os.urandom(2000) if name != "config.txt" else b"arm_64bit=1\n")
    (firmware / "cmdline.txt").write_text(cmdline)
    for p in (root, firmware):
        image_disk.clamp_times(p, EPOCH)
    return root, firmware


def build(tmp: Path, root: Path, firmware: Path) -> Path:
    tmp.mkdir()
    disk = tmp / "card.img"
    image_disk_pi.make_disk(root, firmware, disk, EPOCH, {"fluxforge/README.txt": b"put config.yaml here\n"}, tmp)
    return disk


def test_mbr_labels_and_firmware(tmp_path, image_tools):
    root, firmware = fake_tree(tmp_path)
    disk = build(tmp_path / "a", root, firmware)
    table = subprocess.run(["sfdisk", "--dump", str(disk)], capture_output=True, text=True, check=True).stdout
    assert "label: dos" in table and f"label-id: {image_disk_pi.DISK_ID}" in table, table
    assert f"start=        2048, size=      {image_disk_pi.FIRM_MIB * 2048}, type=c" in table, table
    assert f"start=      {image_disk_pi.root_offset() // 512}," in table and "type=83" in table, table
    firm = image_disk_pi.firm_in_disk(disk)
    assert image_disk.read_fat_file(firm, "cmdline.txt") == (firmware / "cmdline.txt").read_bytes()
    assert image_disk.read_fat_file(firm, "bcm2711-rpi-4-b.dtb") == (firmware / "bcm2711-rpi-4-b.dtb").read_bytes()
    assert image_disk.read_fat_file(firm, "fluxforge/README.txt") == b"put config.yaml here\n"
    blkid = {off: subprocess.run(["blkid", "--probe", "--offset", str(off), str(disk)], capture_output=True,
                                 text=True).stdout for off in (image_disk.MIB, image_disk_pi.root_offset())}
    assert 'LABEL="RASPIFIRM"' in blkid[image_disk.MIB] and 'UUID="F1F0-F0E5"' in blkid[image_disk.MIB], blkid
    assert 'LABEL="RASPIROOT"' in blkid[image_disk_pi.root_offset()], blkid
    fstab = subprocess.run(["debugfs", "-R", "cat /etc/fstab", f"{disk}?offset={image_disk_pi.root_offset()}"],
                           capture_output=True, text=True, check=True).stdout
    assert fstab == image_disk_pi.fstab()


def test_same_tree_same_bytes(tmp_path, image_tools):
    root, firmware = fake_tree(tmp_path)
    first, second = build(tmp_path / "a", root, firmware), build(tmp_path / "b", root, firmware)
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()


def test_firmware_without_the_label_root_is_refused(tmp_path, image_tools):
    """raspi-firmware guessed the root from the build host (its default): that card would not boot."""
    root, firmware = fake_tree(tmp_path, cmdline="console=tty0 root=/dev/vda1 rw rootwait\n")
    (firmware / "bcm2837-rpi-zero-2-w.dtb").unlink()
    with pytest.raises(image_disk.ImageError, match=r"bcm2837-rpi-zero-2-w\.dtb.*root=LABEL=RASPIROOT in "
                                                    r"cmdline\.txt \(it says 'console=tty0 root=/dev/vda1"):
        build(tmp_path / "a", root, firmware)
