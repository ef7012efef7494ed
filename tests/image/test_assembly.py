"""The mount-free disk assembly (packaging/image_disk.py) on a small stand-in root tree.

Fast (seconds) next to the QEMU boot: the GPT layout and ids the fstab and loader entry
rely on, the ESP's files readable with mtools, the root readable with debugfs, and two
assemblies of the same tree giving the same bytes although reading the tree in between
moved its atimes (which `mkfs.ext4 -d` copies).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import image_disk

EPOCH = 1795222800


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_root(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "boot").mkdir(parents=True)
    (root / "usr/lib/systemd/boot/efi").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "boot/vmlinuz-6.1.0-1-cloud-amd64").write_bytes(os.urandom(300_000))
    (root / "boot/initrd.img-6.1.0-1-cloud-amd64").write_bytes(os.urandom(200_000))
    (root / "usr/lib/systemd/boot/efi/systemd-bootx64.efi").write_bytes(b"MZ stand-in")
    (root / "etc/fstab").write_text(image_disk.fstab())
    image_disk.clamp_times(root, EPOCH)
    return root


def assemble(root: Path, out: Path) -> Path:
    out.mkdir()
    esp, rootfs, disk = out / "esp.img", out / "root.img", out / "disk.img"
    image_disk.make_esp(root, esp, "amd64", EPOCH, {"fluxforge/README.txt": b"put config.yaml here\n"})
    image_disk.make_rootfs(root, rootfs, EPOCH)
    image_disk.assemble(esp, rootfs, disk, "amd64")
    return disk


def test_layout_ids_and_contents(tmp_path, image_tools):
    disk = assemble(fake_root(tmp_path), tmp_path / "a")
    table = subprocess.run(["sfdisk", "--dump", str(disk)], capture_output=True, text=True, check=True).stdout
    assert "label: gpt" in table and f"label-id: {image_disk.DISK_GUID.upper()}" in table
    assert f"start=        2048, size=      {image_disk.ESP_MIB * 2048}, type={image_disk.ESP_TYPE}" in table
    assert f"uuid={image_disk.ROOT_PART_GUID.upper()}" in table
    blkid = subprocess.run(["blkid", "--probe", "--offset", str(image_disk.MIB), str(disk)], capture_output=True,
                           text=True).stdout
    assert 'UUID="F1F0-F0E1"' in blkid and 'TYPE="vfat"' in blkid, blkid
    esp = image_disk.esp_in_disk(disk)
    assert image_disk.read_fat_file(esp, "fluxforge/README.txt") == b"put config.yaml here\n"
    assert image_disk.read_fat_file(esp, "EFI/BOOT/BOOTX64.EFI") == b"MZ stand-in"
    entry = image_disk.read_fat_file(esp, "loader/entries/fluxforge.conf").decode()
    assert f"root=UUID={image_disk.ROOT_FS_UUID}" in entry
    offset = image_disk.MIB + image_disk.ESP_MIB * image_disk.MIB
    fstab = subprocess.run(["debugfs", "-R", "cat /etc/fstab", f"{disk}?offset={offset}"], capture_output=True,
                           text=True, check=True).stdout
    assert fstab == image_disk.fstab()
    fsck = subprocess.run(["e2fsck", "-fn", f"{tmp_path / 'a' / 'root.img'}"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_same_tree_same_bytes(tmp_path, image_tools):
    root = fake_root(tmp_path)
    first = assemble(root, tmp_path / "a")
    time.sleep(1.1)  # a later second: any time that leaks into the image now differs
    second = assemble(root, tmp_path / "b")
    assert sha(first) == sha(second)
