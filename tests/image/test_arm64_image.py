"""The Raspberry Pi image (`make image-pi`'s code), read without booting and booted under QEMU.

Opt-in (`make test-image-arm64`, which sets FLUXFORGE_TEST_IMAGE_ARM64=1; never part of `make
test`): the arm64 root is bootstrapped under qemu-user and the boot is an emulated aarch64 CPU.

1. The card image as the Pi's firmware and a laptop see it, read with mtools and debugfs: the
   MBR with RASPIFIRM and RASPIROOT, config.txt and cmdline.txt as Debian's raspi-firmware
   wrote them (root=LABEL=RASPIROOT), the firmware, kernel, initrd and the device trees of the
   Pi 3/4/400/CM4/Zero 2 W; in the root, the arm64 .deb installed (dpkg's status), nothing
   machine-specific, the Pi's journald caps.
2. The image's own kernel and initrd (taken from RASPIFIRM) booted with `qemu-system-aarch64
   -M virt -cpu cortex-a72 -accel tcg` on a copy of the card grown by 1 GiB, the config put
   on RASPIFIRM with mcopy: the kernel finds its root by the label cmdline.txt names, the
   root grows to the card, first boot imports the config from /boot/firmware, collector and
   ETL run and reach the host's loopback exchange and moto through QEMU's forwards only.
   The VideoCore boot chain (bootcode/start*.elf reading config.txt) cannot be emulated: a
   real-Pi boot is a manual release check (docs/images.md).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import image_boot
import image_disk
import image_disk_pi
from image_boot import KEY, guest_config
from qemu_vm import QemuVM, aarch64_direct_boot

pytestmark = pytest.mark.skipif(not os.environ.get("FLUXFORGE_TEST_IMAGE_ARM64"),
                                reason="opt-in: `make test-image-arm64` (arm64 root under qemu-user, slow)")
REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "out" / "image-arm64"
ROOT_OFFSET = image_disk_pi.root_offset()
GROW = 1 << 30


@pytest.fixture(scope="module")
def pi_deb() -> Path:
    image_boot.host_tools("--image-arm64", ("mmdebstrap", "arch-test", "mcopy", "sfdisk", "debugfs",
                                            "qemu-system-aarch64", "socat"))
    return image_boot.fluxforge_deb("arm64", OUT)


@pytest.fixture(scope="module")
def pi_image(pi_deb) -> Path:
    import build_image

    OUT.mkdir(parents=True, exist_ok=True)
    return build_image.build("arm64", pi_deb, OUT, compress=False, reuse=True)["img"]


@pytest.fixture(scope="module")
def disk(pi_image, tmp_path_factory) -> Path:
    """A copy of the card with the marker unit in its root, 1 GiB larger (a bigger card than the image)."""
    copy = image_boot.copy_with_marker(pi_image, Path(tmp_path_factory.mktemp("pi")), ROOT_OFFSET)
    os.truncate(copy, copy.stat().st_size + GROW)
    return copy


def firm(disk: Path) -> str:
    return image_disk_pi.firm_in_disk(disk)


def fat_text(disk: Path, path: str) -> str:
    data = image_disk.read_fat_file(firm(disk), path)
    assert data is not None, f"{path} missing on RASPIFIRM"
    return data.decode()


def root_file(disk: Path, path: str) -> str:
    return image_boot.root_file(disk, ROOT_OFFSET, path)


def test_0_card_holds_what_the_pi_firmware_and_first_boot_need(disk, pi_deb):
    table = subprocess.run(["sfdisk", "--dump", str(disk)], capture_output=True, text=True, check=True).stdout
    assert "label: dos" in table, table
    assert re.search(r"start=\s*2048, size=\s*\d+, type=c\b", table), table
    assert re.search(r"type=83\b", table), table
    labels = {off: subprocess.run(["blkid", "--probe", "--offset", str(off), str(disk)], capture_output=True,
                                  text=True).stdout for off in (image_disk.MIB, ROOT_OFFSET)}
    assert 'LABEL="RASPIFIRM"' in labels[image_disk.MIB] and 'TYPE="vfat"' in labels[image_disk.MIB], labels
    assert 'LABEL="RASPIROOT"' in labels[ROOT_OFFSET] and 'TYPE="ext4"' in labels[ROOT_OFFSET], labels

    config = fat_text(disk, "config.txt")
    for line in ("arm_64bit=1", "enable_uart=1", "upstream_kernel=1"):
        assert line in config.splitlines(), (line, config)
    kernel = re.search(r"^kernel=(vmlinuz-\S+)$", config, re.M).group(1)
    initrd = re.search(r"^initramfs (initrd\.img-\S+)", config, re.M).group(1)
    assert image_disk.read_fat_file(firm(disk), kernel), kernel
    assert image_disk.read_fat_file(firm(disk), initrd), initrd
    cmdline = fat_text(disk, "cmdline.txt")
    assert "root=LABEL=RASPIROOT" in cmdline.split() and "console=ttyS1,115200" in cmdline.split(), cmdline
    listing = subprocess.run(["mdir", "-b", "-i", firm(disk), "::/"], capture_output=True, text=True, check=True,
                             env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    names = {Path(line.strip()).name for line in listing.splitlines()}
    for f in image_disk_pi.REQUIRED_DTBS + ["bootcode.bin", "start4.elf", "fixup4.dat", "start.elf"]:
        assert f in names, (f, sorted(names))
    assert "config.error.txt" in fat_text(disk, "fluxforge/README.txt")

    version = subprocess.run(["dpkg-deb", "-f", str(pi_deb), "Version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    status = root_file(disk, "/var/lib/dpkg/status").split("\n\n")
    ours = next(s for s in status if s.startswith("Package: fluxforge\n"))
    assert "Status: install ok installed" in ours and "Architecture: arm64" in ours, ours
    assert f"Version: {version}\n" in ours, ours
    # The .deb's compiled kernels are aarch64 code (ELF e_machine 183), installed where the package put them.
    listing = subprocess.run(["dpkg-deb", "-c", str(pi_deb)], capture_output=True, text=True, check=True).stdout
    so = next(line.split()[-1].lstrip(".") for line in listing.splitlines() if "book_engine" in line and ".so" in line)
    head = subprocess.run(["debugfs", "-R", f"cat {so}", f"{disk}?offset={ROOT_OFFSET}"], capture_output=True,
                          check=True).stdout[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183, (so, head)
    assert root_file(disk, "/etc/machine-id") == ""
    assert "ssh_host_" not in image_boot.debugfs(disk, ROOT_OFFSET, "ls /etc/ssh")
    shadow = root_file(disk, "/etc/shadow")
    assert all(line.split(":")[1] in ("*", "!", "!*", "") for line in shadow.splitlines()), "a password is set"
    import image_root

    journald = root_file(disk, "/etc/systemd/journald.conf.d/50-appliance.conf")
    assert all(f"{k}={v}" in journald.splitlines() for k, v in image_root.journald_caps("arm64").items()), journald
    fstab = root_file(disk, "/etc/fstab")
    assert "LABEL=RASPIFIRM /boot/firmware vfat" in fstab and "x-systemd.growfs" in fstab, fstab
    wants = image_boot.debugfs(disk, ROOT_OFFSET, "ls /etc/systemd/system/multi-user.target.wants")
    assert "fluxforge.target" in wants and "fluxforge-firstboot.service" in wants


@pytest.fixture(scope="module")
def forwards(loopback, moto_s3) -> list[int]:
    return image_boot.forward_ports(loopback, moto_s3)


def virt_machine(disk: Path) -> list[str]:
    """The card's own kernel and initrd (as config.txt names them) and its cmdline.txt, with the
    console moved to the virt board's UART (the Pi's is ttyS1)."""
    config = fat_text(disk, "config.txt")
    files = {}
    for name in (re.search(r"^kernel=(\S+)$", config, re.M).group(1),
                 re.search(r"^initramfs (\S+)", config, re.M).group(1)):
        files[name] = disk.parent / name
        files[name].write_bytes(image_disk.read_fat_file(firm(disk), name))
    args = [a for a in fat_text(disk, "cmdline.txt").split() if not a.startswith("console=")]
    kernel, initrd = files.values()
    return aarch64_direct_boot(kernel, initrd, " ".join(args + ["console=ttyAMA0"]))


def test_1_config_on_raspifirm_runs_the_appliance(disk, forwards, loopback, moto_s3):
    image_disk.mcopy_files(firm(disk), {
        "fluxforge/config.yaml": yaml.safe_dump(guest_config(loopback, moto_s3)).encode(),
        "fluxforge/credentials/s3_key_id": b"image-key", "fluxforge/credentials/s3_secret": b"image-secret",
        "fluxforge/authorized_keys": (KEY + "\n").encode(), "fluxforge/hostname": b"pibox\n"})
    image_size = disk.stat().st_size - GROW
    vm = QemuVM(disk, disk.parent, forwards, machine=virt_machine(disk))
    report = image_boot.boot(vm, timeout=2400)  # a hang guard: an emulated aarch64 on a busy 2-core host
    image_boot.assert_appliance_ran(report, moto_s3, firm(disk))
    assert re.fullmatch(r"[0-9a-f]{32}", report["machine_id"]), report["machine_id"]
    assert report["ssh_host_keys"] and report["units"]["ssh.service"]["ActiveState"] == "active", report
    assert report["hostname"] == "pibox"
    # The root partition and file system grew into the extra GiB of the "card".
    assert report["root_bytes"] > image_size - ROOT_OFFSET + GROW // 2, (report["root_bytes"], image_size)
