"""Assemble a bootable GPT disk image from a root tree, without mounts or loop devices; its
pieces (make_fat, make_rootfs, write_disk) also make the Pi's MBR card (image_disk_pi.py).

Why this recipe: this machine and CI have no FAT driver and no device-mapper, so
nothing is mounted: `mkfs.ext4 -d` writes the root file system image straight from
the tree, `mkfs.vfat` + `mcopy` (mtools) the EFI system partition, `sfdisk` the
partition table and `dd conv=notrunc,sparse` puts the two into the disk.

Boot loader: systemd-boot.  It is a file on the ESP plus a text entry, so mcopy can
install it; grub-efi's installer wants a mounted ESP and a block device.

Every identifier is fixed (GPT disk and partition GUIDs, the ext4 UUID and hash
seed, the FAT volume id, mkfs timestamps from SOURCE_DATE_EPOCH), so the same root
gives the same bytes.  A flashed image therefore shares these ids with every other
copy: the filesystem UUIDs identify the image, not the machine (machine-id does).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

MIB = 1 << 20
ESP_MIB = 128
ROOT_LABEL = "fluxforge-root"
ESP_LABEL = "FLUXBOOT"
DISK_GUID = "6c0f1f5e-5b3e-4f0a-9d2c-1f1a7a9e0001"
ESP_PART_GUID = "6c0f1f5e-5b3e-4f0a-9d2c-1f1a7a9e0002"
ROOT_PART_GUID = "6c0f1f5e-5b3e-4f0a-9d2c-1f1a7a9e0003"
ROOT_FS_UUID = "6c0f1f5e-5b3e-4f0a-9d2c-1f1a7a9e0004"
ESP_VOLUME_ID = "F1F0F0E1"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE = {"amd64": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"}  # discoverable partitions: x86-64 root
EFI_BINARY = {"amd64": ("usr/lib/systemd/boot/efi/systemd-bootx64.efi", "BOOTX64.EFI")}
KERNEL_OPTIONS = "ro console=tty0 console=ttyS0,115200"


class ImageError(RuntimeError):
    """An image step failed; the message names the step and shows the tool's output."""


def fstab() -> str:
    """The root grows with the disk (x-systemd.growfs); the ESP is root-only (it may hold secrets
    before the first boot imports them) and optional (`nofail`), so a missing one never blocks the
    boot.  No short x-systemd.device-timeout: under TCG udev may take longer than 15 s to announce it."""
    return (f"UUID={ROOT_FS_UUID} / ext4 defaults,x-systemd.growfs,errors=remount-ro 0 1\n"
            f"UUID={ESP_VOLUME_ID[:4]}-{ESP_VOLUME_ID[4:]} /boot/efi vfat "
            "umask=0077,shortname=mixed,nofail 0 2\n")


def run(argv: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw)
    if proc.returncode != 0:
        raise ImageError(f"{' '.join(argv[:3])} ... exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc


def tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            total += st.st_blocks * 512
    return total


def clamp_times(root: Path, epoch: int) -> None:
    """Every file, link and directory gets mtime and atime <= `epoch` (atime = epoch exactly)."""
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if st.st_mtime > epoch or st.st_atime != epoch:
                os.utime(p, (epoch, min(st.st_mtime, epoch)), follow_symlinks=False)
    st = os.lstat(root)
    os.utime(root, (epoch, min(st.st_mtime, epoch)))


def make_rootfs(root: Path, out: Path, epoch: int, label: str = ROOT_LABEL, uuid: str = ROOT_FS_UUID) -> int:
    """ext4 image of `root`: its content plus 25 % and 256 MiB of head room (the partition and
    file system grow to the card / virtual disk at first boot).  Returns its size in bytes."""
    size = (int(tree_bytes(root) * 1.25) + 256 * MIB + 4 * MIB - 1) // (4 * MIB) * (4 * MIB)
    out.unlink(missing_ok=True)
    run(["mkfs.ext4", "-q", "-F", "-L", label, "-U", uuid, "-E", f"hash_seed={uuid},root_owner=0:0",
         "-d", str(root), str(out), f"{size // 1024}K"], env={"E2FSPROGS_FAKE_TIME": str(epoch)})
    fix_inode_times(root, out, epoch)
    return size


def fix_inode_times(root: Path, image: Path, epoch: int) -> None:
    """mkfs.ext4 -d copies each file's ctime and atime, which no one can set on the source tree
    (reading it moves atimes; setting them moves ctimes): set both to `epoch` in the image."""
    cmds = []
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            rel = "/" + os.path.relpath(os.path.join(dirpath, name), root)
            if '"' in rel or "\n" in rel:
                continue  # debugfs cannot quote it; that inode keeps its copied times
            cmds += [f'sif "{rel}" ctime @{epoch}\n', f'sif "{rel}" atime @{epoch}\n']
    cmds += [f"sif / ctime @{epoch}\n", f"sif / atime @{epoch}\n"]
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as fh:
        fh.writelines(cmds)
        fh.flush()
        proc = run(["debugfs", "-w", "-f", fh.name, str(image)], env={"E2FSPROGS_FAKE_TIME": str(epoch)})
    bad = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(("debugfs ", "debugfs:"))]
    if bad:
        raise ImageError("debugfs could not set inode times:\n" + "\n".join(bad[:10]))


def make_esp(root: Path, out: Path, arch: str, epoch: int, extra: dict[str, bytes]) -> None:
    """FAT32 ESP: systemd-boot as the removable-media loader, one entry, the kernel and initrd,
    and `extra` (path on the ESP -> content, e.g. the fluxforge/ folder's README)."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if len(kernels) != 1 or len(initrds) != 1:
        raise ImageError(f"expected one kernel and one initrd in the root's /boot, found {kernels} {initrds}")
    efi_src, efi_name = EFI_BINARY[arch]
    files = {
        f"EFI/BOOT/{efi_name}": (root / efi_src).read_bytes(),
        f"EFI/systemd/{Path(efi_src).name}": (root / efi_src).read_bytes(),
        "loader/loader.conf": b"default fluxforge.conf\ntimeout 0\neditor no\n",
        "loader/entries/fluxforge.conf": (f"title FluxForge appliance\nlinux /vmlinuz\ninitrd /initrd.img\n"
                                          f"options root=UUID={ROOT_FS_UUID} {KERNEL_OPTIONS}\n").encode(),
        "vmlinuz": kernels[0].read_bytes(),
        "initrd.img": initrds[0].read_bytes(),
        **extra,
    }
    make_fat(out, ESP_LABEL, ESP_VOLUME_ID, ESP_MIB, files, epoch)


def make_fat(out: Path, label: str, volume_id: str, mib: int, files: dict[str, bytes], epoch: int) -> None:
    """A FAT32 partition image of `mib` MiB holding `files`, with fixed label, volume id and timestamps."""
    out.unlink(missing_ok=True)
    env = {"SOURCE_DATE_EPOCH": str(epoch), "MTOOLS_SKIP_CHECK": "1"}
    # --invariant fixes mkfs.vfat's time-based fields but also forces volume id 1234-ABCD: set ours after.
    run(["mkfs.vfat", "-F", "32", "-n", label, "--invariant", "-C", str(out), str(mib * 1024)], env=env)
    run(["mlabel", "-N", volume_id, "-i", str(out), f"::{label}"], env=env)
    mcopy_files(out, files, epoch)


def mcopy_files(image: str | Path, files: dict[str, bytes], epoch: int | None = None) -> None:
    """Write files into a FAT image (or `disk.img@@offset`) with mtools, creating folders."""
    env = {"MTOOLS_SKIP_CHECK": "1", **({"SOURCE_DATE_EPOCH": str(epoch)} if epoch is not None else {})}
    dirs = sorted({str(Path(p).parents[i]) for p in files for i in range(len(Path(p).parts) - 1)})
    for d in dirs:
        exists = subprocess.run(["mdir", "-b", "-i", str(image), f"::/{d}"], capture_output=True,
                                env={**os.environ, **env}).returncode == 0
        if not exists:
            run(["mmd", "-i", str(image), f"::/{d}"], env=env)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (dest, data) in enumerate(sorted(files.items())):
            src = Path(tmp) / str(i)
            src.write_bytes(data)
            if epoch is not None:
                os.utime(src, (epoch, epoch))
            run(["mcopy", "-o", "-m", "-i", str(image), str(src), f"::/{dest}"], env=env)


def read_fat_file(image: str | Path, path: str) -> bytes | None:
    """A file from a FAT image (or `disk.img@@offset`), None if it is not there."""
    proc = subprocess.run(["mtype", "-i", str(image), f"::/{path}"], capture_output=True,
                          env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    return proc.stdout if proc.returncode == 0 else None


def assemble(esp: Path, rootfs: Path, out: Path, arch: str) -> None:
    """GPT disk: 1 MiB for the table, the ESP, the root, 1 MiB for the backup table."""
    esp_size, root_size = esp.stat().st_size, rootfs.stat().st_size
    script = (f"label: gpt\nlabel-id: {DISK_GUID}\nunit: sectors\nfirst-lba: 2048\n"
              f"start=2048, size={esp_size // 512}, type={ESP_TYPE}, uuid={ESP_PART_GUID}, name=\"ESP\"\n"
              f"start={(MIB + esp_size) // 512}, size={root_size // 512}, type={ROOT_TYPE[arch]}, "
              f"uuid={ROOT_PART_GUID}, name=\"{ROOT_LABEL}\"\n")
    write_disk(out, script, [esp, rootfs])


def write_disk(out: Path, table: str, parts: list[Path]) -> None:
    """A sparse disk image: `table` (an sfdisk script) written by sfdisk, then `parts` copied in one
    after the other from 1 MiB on (where the table's partitions must start), 1 MiB spare at the end
    (GPT's backup table)."""
    out.unlink(missing_ok=True)
    with open(out, "wb") as fh:
        fh.truncate(MIB + sum(p.stat().st_size for p in parts) + MIB)
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(out)], input=table)
    offset = MIB
    for part in parts:
        run(["dd", f"if={part}", f"of={out}", "bs=1M", f"seek={offset // MIB}", "conv=notrunc,sparse",
             "status=none"])
        offset += part.stat().st_size


def esp_in_disk(disk: Path) -> str:
    """The mtools image spec of the ESP inside an assembled disk (partition 1 starts at 1 MiB)."""
    return f"{disk}@@{MIB}"
