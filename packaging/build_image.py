#!/usr/bin/env python3
"""Build the flashable appliance images: dist/fluxforge-<version>-amd64.img (+ .qcow2, .img.zst)
and the Raspberry Pi card dist/fluxforge-<version>-rpi-arm64.img (+ .img.zst).

    packaging/build_image.py [--arch amd64|arm64] [--deb dist/fluxforge_<v>_<arch>.deb] [--out dist]

GPT with a FAT32 EFI system partition (systemd-boot, the kernel, and the `fluxforge/`
folder the user fills from their laptop) and an ext4 root: Debian bookworm minbase with
linux-image-cloud-amd64, systemd-networkd (DHCP), timesyncd, openssh-server, cloud-init
and growroot, and our .deb with fluxforge.target enabled.  Without --deb the .deb is
built first as `make deb` does.  The root comes from image_root.py (mmdebstrap, cached
by its inputs); assembly (image_disk.py) needs no mount, loop device or FAT driver.
The Pi image (--arch arm64, image_disk_pi.py) is MBR with the FAT32 RASPIFIRM partition that
Debian's raspi-firmware fills and an ext4 RASPIROOT; its root is bootstrapped under qemu-user
(binfmt_misc, as `make deb-arm64` builds), so its first build is slow and then cached.
SOURCE_DATE_EPOCH (default: the date of the newest debian/changelog entry) fixes every
timestamp, so the same inputs give the same image checksums (docs/images.md).
"""
from __future__ import annotations

import argparse
import email.utils
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_deb  # noqa: E402
import image_disk  # noqa: E402
import image_disk_pi  # noqa: E402
import image_root  # noqa: E402
from fluxforge.fsio import sha256_file  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ESP_README = """\
FluxForge appliance: put your configuration in this folder, then boot.

  config.yaml        the FluxForge config (see config.example.yaml here and docs/images.md)
  credentials/NAME   one secret per file; use it in config.yaml as "${credential:fluxforge_NAME}"
                     (imported into /etc/fluxforge/credentials/ and then deleted from this card)
  hostname           optional: the host name
  authorized_keys    your SSH public key(s): log in as root@<host> with them

At boot the config is checked.  If it is wrong, config.error.txt appears in this
folder with the field and the reason, and the FluxForge services stay off until it
is fixed (fix it here and reboot).
"""


def default_epoch() -> int:
    """SOURCE_DATE_EPOCH, else the newest debian/changelog entry's date (as Debian builds do)."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    text = (REPO / "packaging/debian/changelog").read_text()
    date = re.search(r"^ -- .*?>  (.+)$", text, re.M).group(1)
    return int(email.utils.parsedate_to_datetime(date).timestamp())


def deb_version(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                          text=True).stdout.strip()


def assembly_key(root: Path, *extra: bytes) -> str:
    """What the assembled .img depends on besides the (content-keyed) root: the assembly code and ESP extras."""
    h = hashlib.sha256(root.name.encode())
    for p in (Path(image_disk.__file__), Path(image_disk_pi.__file__), Path(__file__)):
        h.update(p.read_bytes())
    for blob in extra:
        h.update(blob)
    return h.hexdigest()


IMAGE_NAME = {"amd64": "fluxforge-{version}-amd64", "arm64": "fluxforge-{version}-rpi-arm64"}


def build(arch: str, deb: Path, out: Path, compress: bool = True, reuse: bool = False,
          log=print) -> dict[str, Path]:
    """Build the image files from `deb`; returns {"img", "qcow2", "zst"} paths (the .qcow2 and .zst only
    with `compress`).  With `reuse` (the boot test), an .img assembled from the same inputs is kept."""
    started = time.monotonic()
    epoch = default_epoch()
    version = deb_version(deb)
    mounted_binfmt = build_deb.ensure_binfmt(arch)
    try:
        root = image_root.cached_image_root(arch, deb, epoch, log=log)
    finally:
        if mounted_binfmt:
            subprocess.run(["umount", "/proc/sys/fs/binfmt_misc"], check=False)
    t_root = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    name = IMAGE_NAME[arch].format(version=version)
    base = out / name
    example = (REPO / "config/config.example.yaml").read_bytes()
    img, inputs = Path(f"{base}.img"), Path(f"{base}.inputs")
    key = assembly_key(root, example)
    if reuse and img.exists() and inputs.exists() and inputs.read_text() == key:
        log(f"build_image: {img} is up to date (same root and assembly inputs)")
        return {"img": img}
    inputs.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".image-") as tmp:
        extra = {"fluxforge/README.txt": ESP_README.encode(), "fluxforge/config.example.yaml": example}
        if arch == "arm64":
            root_size = image_disk_pi.make_disk(root, image_root.firmware_dir(root), img, epoch, extra, Path(tmp))
            boot_mib = image_disk_pi.FIRM_MIB
        else:
            esp, rootfs = Path(tmp) / "esp.img", Path(tmp) / "root.img"
            image_disk.make_esp(root, esp, arch, epoch, extra)
            root_size = image_disk.make_rootfs(root, rootfs, epoch)
            image_disk.assemble(esp, rootfs, img, arch)
            boot_mib = image_disk.ESP_MIB
    inputs.write_text(key)
    files = {"img": img}
    if compress and arch != "arm64":  # a VM disk; the Pi's card image has no use for one
        files["qcow2"] = Path(f"{base}.qcow2")
        image_disk.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(img), str(files["qcow2"])])
    if compress:
        files["zst"] = Path(f"{img}.zst")
        image_disk.run(["zstd", "-q", "-f", "-T0", "-12", str(img), "-o", str(files["zst"])])
    sums = "".join(f"{sha256_file(p)}  {p.name}\n" for p in files.values())
    (out / f"{name}.SHA256SUMS").write_text(sums)
    done = time.monotonic()
    log(f"build_image: root {image_disk.tree_bytes(root) / 1e6:.0f} MB in a {root_size / 1e6:.0f} MB ext4, "
        f"boot partition {boot_mib} MiB; root {t_root - started:.0f} s, assembly {done - t_root:.0f} s")
    for p in files.values():
        alloc = p.stat().st_blocks * 512
        log(f"build_image: {p} {p.stat().st_size / 1e6:.0f} MB ({alloc / 1e6:.0f} MB allocated)")
    sys.stdout.write(sums)
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="amd64", choices=sorted(IMAGE_NAME))
    ap.add_argument("--deb", type=Path, help="the fluxforge .deb to install (default: build it as `make deb` does)")
    ap.add_argument("--out", type=Path, default=REPO / "dist")
    ap.add_argument("--raw-only", action="store_true", help="only the .img (no .qcow2, no .img.zst)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("build_image: needs root (mmdebstrap, file ownership in the root tree)", file=sys.stderr)
        return 1
    try:
        deb = args.deb.resolve() if args.deb else build_deb.build(args.arch, args.out.resolve())
        build(args.arch, deb, args.out.resolve(), compress=not args.raw_only)
    except (image_disk.ImageError, subprocess.CalledProcessError) as e:
        print(f"build_image: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
