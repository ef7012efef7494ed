"""Assemble the Raspberry Pi SD-card image (MBR, FAT32 RASPIFIRM + ext4 RASPIROOT), mount-free.

Why a layout of its own: the Pi's VideoCore boot ROM/firmware reads the first FAT partition
of an MBR disk (the Pi 3 cannot boot GPT) and takes everything from it -- its own firmware
files, config.txt, cmdline.txt, the device trees, the kernel and the initrd.  Debian's
`raspi-firmware` kernel hook writes exactly that set into /boot/firmware of the root tree
(image_root.py points it at `root=LABEL=RASPIROOT`); this module puts that folder on p1
and the rest of the tree on p2, with the same mount-free pieces as the amd64 image
(image_disk: make_fat, make_rootfs, write_disk).  The labels are the ones Debian's own
Raspberry Pi images use, so the firmware partition also appears as RASPIFIRM on a laptop.

Fixed ids (MBR disk id, FAT volume id, ext4 UUID and hash seed) as in image_disk: the
same root gives the same bytes.
"""
from __future__ import annotations

import os
from pathlib import Path

from image_disk import MIB, ImageError, make_fat, make_rootfs, write_disk

FIRM_LABEL = "RASPIFIRM"
ROOT_LABEL = "RASPIROOT"
FIRM_MIB = 256  # the firmware, two kernels and two initrds during a kernel upgrade
FIRM_VOLUME_ID = "F1F0F0E5"
ROOT_FS_UUID = "6c0f1f5e-5b3e-4f0a-9d2c-1f1a7a9e0014"
DISK_ID = "0xf1f0f0e6"
FAT32_LBA, LINUX = "c", "83"
# Device trees the image must carry: Pi 3 B / 3 B+ / 3 A+, Zero 2 W, 4 B, 400, CM4 (on its IO board).
# (bookworm's linux-image-arm64 has no Pi 5 device tree and raspi-firmware no Pi 5 firmware.)
REQUIRED_DTBS = ["bcm2837-rpi-3-b.dtb", "bcm2837-rpi-3-b-plus.dtb", "bcm2837-rpi-3-a-plus.dtb",
                 "bcm2837-rpi-zero-2-w.dtb", "bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb",
                 "bcm2711-rpi-cm4-io.dtb"]
REQUIRED_FILES = ["config.txt", "cmdline.txt", "start4.elf", "fixup4.dat", "bootcode.bin", "start.elf"]


def fstab() -> str:
    """Root and firmware partition by label, as cmdline.txt names the root.  The firmware partition is
    root-only (it may hold secrets before the first boot imports them) and optional (`nofail`)."""
    return (f"LABEL={ROOT_LABEL} / ext4 defaults,x-systemd.growfs,errors=remount-ro 0 1\n"
            f"LABEL={FIRM_LABEL} /boot/firmware vfat umask=0077,shortname=mixed,nofail 0 2\n")


def firmware_files(firmware: Path) -> dict[str, bytes]:
    """The raspi-firmware hook's output (a flat folder, plus overlays/ if any), checked for what
    a Pi 3/4 needs to boot this image."""
    files = {}
    for dirpath, _dirs, names in os.walk(firmware):
        for name in names:
            p = Path(dirpath) / name
            files[str(p.relative_to(firmware))] = p.read_bytes()
    missing = [f for f in REQUIRED_FILES + REQUIRED_DTBS if f not in files]
    if not any(f.startswith("vmlinuz-") for f in files) or not any(f.startswith("initrd.img-") for f in files):
        missing.append("vmlinuz-*/initrd.img-*")
    cmdline = files.get("cmdline.txt", b"").decode()
    if f"root=LABEL={ROOT_LABEL}" not in cmdline:
        missing.append(f"root=LABEL={ROOT_LABEL} in cmdline.txt (it says {cmdline.strip()!r})")
    if missing:
        raise ImageError(f"raspi-firmware's output in {firmware} lacks: {', '.join(missing)}")
    return files


def make_disk(root: Path, firmware: Path, out: Path, epoch: int, extra: dict[str, bytes], workdir: Path) -> int:
    """The SD-card image `out` from the root tree and its firmware folder (+ `extra` files on the
    FAT partition).  Returns the ext4 root's size in bytes."""
    boot, rootfs = workdir / "firm.img", workdir / "root.img"
    make_fat(boot, FIRM_LABEL, FIRM_VOLUME_ID, FIRM_MIB, {**firmware_files(firmware), **extra}, epoch)
    root_size = make_rootfs(root, rootfs, epoch, label=ROOT_LABEL, uuid=ROOT_FS_UUID)
    table = (f"label: dos\nlabel-id: {DISK_ID}\nunit: sectors\n"
             f"start=2048, size={FIRM_MIB * MIB // 512}, type={FAT32_LBA}\n"
             f"start={(MIB + FIRM_MIB * MIB) // 512}, size={root_size // 512}, type={LINUX}\n")
    write_disk(out, table, [boot, rootfs])
    return root_size


def firm_in_disk(disk: Path) -> str:
    """The mtools image spec of RASPIFIRM inside an assembled card image (p1 starts at 1 MiB)."""
    return f"{disk}@@{MIB}"


def root_offset() -> int:
    """Byte offset of RASPIROOT in the card image (debugfs `disk?offset=`)."""
    return MIB + FIRM_MIB * MIB
