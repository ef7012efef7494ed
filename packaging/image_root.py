"""The appliance image's root file system: mmdebstrap bookworm + our .deb, cached by its inputs.

Why mmdebstrap into a directory: the image is assembled without mounts (this machine and
CI have no FAT driver and no device-mapper), so the root must exist as a plain tree that
`mkfs.ext4 -d` can copy.  Two cache levels under the build cache (like buildroot.py's
roots): the *base* (Debian's packages, minutes to bootstrap) is keyed on the package
list, dpkg filters, mirror and SOURCE_DATE_EPOCH, so it is made once; the *image root*
(a copy of the base with our .deb installed by dpkg in systemd-nspawn, the overlay files
of packaging/image/rootfs/, the journald caps) is keyed on the .deb's sha256 and those
inputs, so each new .deb costs under a minute, not a bootstrap.

Reproducibility: SOURCE_DATE_EPOCH is passed to mmdebstrap and dpkg (dpkg, initramfs-tools
and shadow honour it) and every mtime in the image root is clamped to it
(image_disk.clamp_times); machine-specific files (machine-id, SSH host keys, random seeds,
logs, apt lists) are emptied or removed.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import buildroot
import image_disk
import image_disk_pi
from image_disk import ImageError
import yaml
from fluxforge.fsio import sha256_file

REPO = Path(__file__).resolve().parent.parent
OVERLAY = REPO / "packaging" / "image" / "rootfs"
ANSIBLE_DEFAULTS = REPO / "ansible" / "roles" / "appliance_host" / "defaults" / "main.yml"

# What every image holds on top of minbase.
COMMON_PACKAGES = ["systemd", "systemd-sysv", "systemd-timesyncd", "systemd-resolved", "dbus", "udev",
                   "openssh-server", "ca-certificates", "iproute2", "zstd", "less", "kmod",
                   "cloud-init", "cloud-guest-utils", "cloud-initramfs-growroot", "e2fsprogs", "dosfstools",
                   # what the .deb depends on, so installing it later needs no download
                   "python3", "libstdc++6"]
# Bump when the mmdebstrap recipe changes in a way the package list does not show.
BASE_RECIPE = 1
IMAGE_PACKAGES = {
    "amd64": COMMON_PACKAGES + ["linux-image-cloud-amd64", "systemd-boot", "systemd-boot-efi"],
    # The Pi: Debian's generic arm64 kernel (Pi 3/4/400/CM4/Zero 2 W device trees) and raspi-firmware,
    # whose kernel hook fills /boot/firmware (VideoCore firmware, config.txt, cmdline.txt, DTBs, kernel, initrd).
    "arm64": COMMON_PACKAGES + ["linux-image-arm64", "initramfs-tools", "raspi-firmware"],
}
# Archive components per image (raspi-firmware is in non-free-firmware).
COMPONENTS = {"amd64": ["main"], "arm64": ["main", "non-free-firmware"]}
# The Pi's root is found by label (the image's p2), the console on HDMI and the GPIO UART (ttyS1 on
# Pi 3/4); raspi-firmware's hook reads these from its defaults file when it writes cmdline.txt.
RASPI_DEFAULTS = ['ROOTPART="LABEL=RASPIROOT"', 'CONSOLES="tty0 ttyS1,115200"']

# Each image's fstab and the mount point of its FAT partition (where the user's fluxforge/ folder is).
FSTAB = {"amd64": image_disk.fstab, "arm64": image_disk_pi.fstab}
BOOT_MOUNT = {"amd64": "boot/efi", "arm64": "boot/firmware"}
# journald caps per image, the Ansible role's device-class preset (one source of truth).
DEVICE_CLASS = {"amd64": "cloud", "arm64": "pi"}
# Units the image enables besides what the packages enable (the .deb enables fluxforge.target).
ENABLED_UNITS = ["systemd-networkd.service", "systemd-resolved.service", "systemd-timesyncd.service",
                 "fluxforge-ssh-hostkeys.service"]
# Left out of the image: documentation, man pages and translations (not needed on an appliance).
DPKG_EXCLUDES = ["/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*", "/usr/share/locale/*",
                 "/usr/share/lintian/*", "/usr/share/linda/*"]
DPKG_INCLUDES = ["/usr/share/doc/fluxforge/*", "/usr/share/doc/*/copyright"]


def journald_caps(arch: str) -> dict[str, str]:
    presets = yaml.safe_load(ANSIBLE_DEFAULTS.read_text())["appliance_host_journald_presets"]
    return {k: str(v) for k, v in presets[DEVICE_CLASS[arch]].items()}


def overlay_files() -> list[Path]:
    return sorted(p for p in OVERLAY.rglob("*") if p.is_file())


def base_key(arch: str, epoch: int) -> str:
    """Cache key of the bootstrapped Debian part: packages, dpkg filters, mirror, suite, epoch."""
    h = hashlib.sha256()
    h.update(" ".join(IMAGE_PACKAGES[arch] + DPKG_EXCLUDES + DPKG_INCLUDES).encode())
    h.update(f"{BASE_RECIPE} {epoch} {buildroot.MIRROR} {buildroot.SUITE}".encode())
    if COMPONENTS[arch] != ["main"]:
        h.update(" ".join(COMPONENTS[arch] + _customize_hooks(arch)).encode())
    return h.hexdigest()[:12]


def root_key(arch: str, deb: Path, epoch: int) -> str:
    """Cache key of the finished root: the base plus the .deb and everything laid over it."""
    h = hashlib.sha256()
    h.update(base_key(arch, epoch).encode() + b" " + " ".join(ENABLED_UNITS).encode())
    h.update(sha256_file(deb).encode())
    for p in overlay_files():
        h.update(str(p.relative_to(OVERLAY)).encode() + b"\0" + p.read_bytes())
    h.update(repr(sorted(journald_caps(arch).items())).encode())
    h.update(FSTAB[arch]().encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:12]


def _cached(name: str, build, log) -> Path:
    """CACHE/image-roots/<name>, made by build(tmp) once; a marker beside it (not inside, so
    mkfs.ext4 -d does not copy it) says it is complete."""
    path = buildroot.CACHE / "image-roots" / name
    marker = path.with_name(name + ".complete")
    if marker.exists():
        log(f"image_root: cached {path}")
        return path
    with buildroot._locked(name):
        if marker.exists():
            return path
        tmp = path.parent / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        build(tmp)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
        marker.write_text(name + "\n")
        log(f"image_root: {path} ready in {time.monotonic() - started:.0f} s (cached for next time)")
    return path


def cached_base_root(arch: str, epoch: int, log=print) -> Path:
    """Debian bookworm with the image's packages (no FluxForge yet): bootstrapped once per package list."""
    name = f"base-{buildroot.SUITE}-{arch}-{base_key(arch, epoch)}"

    def build(tmp: Path) -> None:
        log(f"image_root: mmdebstrap {buildroot.SUITE} {arch} ({len(IMAGE_PACKAGES[arch])} packages + minbase)")
        _mmdebstrap(arch, epoch, tmp)
    return _cached(name, build, log)


def cached_image_root(arch: str, deb: Path, epoch: int, log=print) -> Path:
    """The finished root for (arch, deb, inputs): a copy of the base with the .deb installed
    (by dpkg in systemd-nspawn, as an operator would), the image's files, nothing machine-specific."""
    base = cached_base_root(arch, epoch, log)
    name = f"image-{buildroot.SUITE}-{arch}-{root_key(arch, deb, epoch)}"

    def build(tmp: Path) -> None:
        log(f"image_root: {deb.name} into a copy of {base.name}")
        subprocess.run(["cp", "-a", "--reflink=auto", f"{base}/.", str(tmp)], check=True)
        shutil.copy2(deb, tmp / deb.name)  # nspawn mounts its own /tmp: keep it out of there
        # dpkg, not apt: the base already holds every dependency, so this needs no network.
        proc = buildroot.nspawn_run(tmp, ["dpkg", "-i", f"/{deb.name}"], check=False,
                                    env={"DEBIAN_FRONTEND": "noninteractive", "SOURCE_DATE_EPOCH": str(epoch)},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise ImageError(f"dpkg -i {deb.name} in the image root failed:\n{proc.stdout[-3000:]}")
        (tmp / deb.name).unlink()
        shutil.copytree(OVERLAY, tmp, dirs_exist_ok=True, symlinks=True)
        subprocess.run(["systemctl", f"--root={tmp}", "enable", *ENABLED_UNITS], check=True,
                       capture_output=True)
        _finish(tmp, arch, epoch, firmware_out=firmware_dir(buildroot.CACHE / "image-roots" / name))
    path = _cached(name, build, log)
    _prune(keep={path.name, base.name})
    return path


def firmware_dir(root: Path) -> Path:
    """The Pi's /boot/firmware content (raspi-firmware's output) for the image root `root`: kept beside
    the root, not in it, because it goes onto the FAT partition and the root's /boot/firmware is the
    (empty) mount point in the ext4."""
    return root.with_name(root.name + ".firmware")


def _prune(keep: set[str], max_roots: int = 2) -> None:
    """Finished roots are one per .deb: keep the newest few so the cache does not fill the disk."""
    roots = buildroot.CACHE / "image-roots"
    finished = sorted((p for p in roots.glob("image-*.complete")), key=lambda p: p.stat().st_mtime, reverse=True)
    for marker in finished[max_roots:]:
        name = marker.name.removesuffix(".complete")
        if name in keep:
            continue
        marker.unlink(missing_ok=True)
        shutil.rmtree(roots / name, ignore_errors=True)
        shutil.rmtree(firmware_dir(roots / name), ignore_errors=True)


def _mmdebstrap(arch: str, epoch: int, target: Path) -> None:
    mirror = buildroot.MIRROR.rstrip("/")
    security = os.environ.get("FLUXFORGE_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
    comps = " ".join(COMPONENTS[arch])
    sources = [f"deb {mirror} {buildroot.SUITE} {comps}", f"deb {mirror} {buildroot.SUITE}-updates {comps}",
               f"deb {security} {buildroot.SUITE}-security {comps}"]
    argv = ["mmdebstrap", "--mode=root", "--variant=minbase", f"--architectures={arch}",
            "--include=" + ",".join(IMAGE_PACKAGES[arch]),
            "--aptopt=APT::Install-Recommends \"false\"",
            *[f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES],
            *[f"--dpkgopt=path-include={p}" for p in DPKG_INCLUDES],
            *[f"--customize-hook={hook}" for hook in _customize_hooks(arch)],
            buildroot.SUITE, str(target), *sources]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise ImageError(f"mmdebstrap failed (exit {proc.returncode}):\n{tail}")


def _customize_hooks(arch: str) -> list[str]:
    """mmdebstrap customize hooks: on the Pi, point raspi-firmware at the image's root label and run
    its kernel hook again (at install it guessed the root from the build host's mounts)."""
    hooks = []
    if "raspi-firmware" in IMAGE_PACKAGES[arch]:
        lines = ["", "# Set by the FluxForge image build (packaging/image_root.py)", *RASPI_DEFAULTS]
        hooks += [f"printf '%s\\n' {' '.join(shlex.quote(x) for x in lines)} >> \"$1/etc/default/raspi-firmware\"",
                  "chroot \"$1\" env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware"]
    return hooks + ["chroot \"$1\" apt-get clean"]


def _finish(root: Path, arch: str, epoch: int, firmware_out: Path) -> None:
    """Image policy files, then strip everything machine-specific and clamp mtimes.  A populated
    /boot/firmware (the Pi's) moves to `firmware_out`, leaving the empty mount point."""
    caps = journald_caps(arch)
    conf = root / "etc/systemd/journald.conf.d/50-appliance.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f"# journald limits for a {DEVICE_CLASS[arch]} host (the Ansible role's preset).\n[Journal]\n"
                    + "".join(f"{k}={v}\n" for k, v in caps.items()))
    if caps.get("Storage") == "persistent":
        (root / "var/log/journal").mkdir(parents=True, exist_ok=True)
    (root / "etc/fstab").write_text(FSTAB[arch]())
    boot = root / BOOT_MOUNT[arch]
    if "raspi-firmware" in IMAGE_PACKAGES[arch]:  # its hook filled /boot/firmware: that is partition 1
        shutil.rmtree(firmware_out, ignore_errors=True)
        boot.rename(firmware_out)
        image_disk.clamp_times(firmware_out, epoch)
    boot.mkdir(parents=True, exist_ok=True)
    (root / "etc/hostname").write_text("fluxforge\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tfluxforge\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    # Empty machine-id: systemd makes this machine's own at first boot (and runs first-boot presets).
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for p in (root / "etc/ssh").glob("ssh_host_*"):
        p.unlink()
    # No password for anyone: root is locked ('*'); access is by the boot partition's authorized_keys.
    shadow = root / "etc/shadow"
    shadow.write_text("".join(_lock_root(line) for line in shadow.read_text().splitlines(keepends=True)))
    for rel in ("var/lib/systemd/random-seed", "var/cache/ldconfig/aux-cache", "var/log/dpkg.log",
                "var/log/apt/history.log", "var/log/apt/term.log", "var/log/alternatives.log",
                "var/log/bootstrap.log", "var/cache/debconf/templates.dat-old", "var/cache/debconf/config.dat-old",
                "etc/resolv.conf"):
        (root / rel).unlink(missing_ok=True)
    (root / "etc/resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    for d in ("var/lib/apt/lists", "var/cache/apt/archives", "tmp", "var/tmp"):
        _empty_dir(root / d)
    image_disk.clamp_times(root, epoch)


def _lock_root(line: str) -> str:
    fields = line.split(":")
    if fields[0] == "root" and len(fields) > 2:
        fields[1] = "*"
    return ":".join(fields)


def _empty_dir(path: Path) -> None:
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.name in ("partial", "lock", "auxfiles"):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
