#!/bin/sh
# Install the host tools the tests, the .deb build and the appliance boot test need,
# from Debian's archive through apt (the only way this repo touches the host system).
# `--unit` (make test-unit) wants only what unit and integration tests call: prometheus (promtool),
# Java (Spark, one of the Parquet readers tests/integration/test_parquet_readers.py checks) and
# libfaketime (a collector whose wall clock steps).
#
#   debootstrap        clean bookworm roots (build root, test containers)
#   systemd-container  systemd-nspawn to run / boot them
#   lintian            checks the built package
#   dpkg-dev           dpkg-deb/dpkg-architecture on the host (inspect the .deb)
#   openssh-client     Ansible's SSH connection into the test container
#   util-linux         nsenter (usually present already)
#   prometheus         promtool, which checks contrib/prometheus/*.yml (tests/unit/test_metrics_contrib.py)
#   default-jre-headless  Java 17 for pyspark (tests/integration/test_parquet_readers.py; --unit only)
#   libfaketime        LD_PRELOAD: steps the collector's wall clock (tests/integration/test_clock_steps.py; --unit only)
#   qemu-user-static   (only with --arm64) runs arm64 binaries for `make deb-arm64`
#   (only with --image: `make image`, `make test-image`, packaging/build_image.py)
#   mmdebstrap         the image's root, bootstrapped without mounts or chroot tricks
#   e2fsprogs          mkfs.ext4 -d: the root filesystem image from a directory, no mount
#   dosfstools mtools  mkfs.vfat + mcopy/mdir: the ESP image, no FAT driver needed
#   fdisk              sfdisk: the GPT partition table
#   qemu-utils zstd    qemu-img (the .qcow2) and the .img.zst
#   qemu-system-x86 ovmf   the boot test: QEMU (TCG) with UEFI firmware
#   socat              the boot test: QEMU guestfwd to the host's loopback exchange and moto
#   (only with --image-arm64: `make image-pi`, `make test-image-arm64`: the --image and --arm64 tools, and)
#   arch-test          mmdebstrap's check that the arm64 root can run here (through qemu-user)
#   qemu-system-arm    the Pi image's boot test: qemu-system-aarch64 -M virt (TCG)
#
# Idempotent and quick when everything is present: apt is only called when a
# package is missing, and then always `apt-get update` first.
set -eu

want="debootstrap systemd-container lintian dpkg-dev openssh-client util-linux debian-archive-keyring prometheus"
if [ "${1:-}" = "--unit" ]; then
    want="prometheus default-jre-headless libfaketime"
fi
if [ "${1:-}" = "--arm64" ]; then
    want="$want qemu-user-static binfmt-support"
fi
image="mmdebstrap e2fsprogs dosfstools mtools fdisk qemu-utils zstd qemu-system-x86 ovmf socat"
if [ "${1:-}" = "--image" ]; then
    want="$want $image"
fi
if [ "${1:-}" = "--image-arm64" ]; then
    want="$want $image qemu-user-static binfmt-support arch-test qemu-system-arm"
fi

missing=""
for p in $want; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing="$missing $p"
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-host-deps: need root to install:$missing" >&2
        exit 1
    fi
    echo "install-host-deps: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
fi
