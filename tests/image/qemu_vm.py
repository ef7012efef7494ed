"""Boot a disk image in QEMU (TCG; amd64 with UEFI, arm64 on -M virt with the image's own kernel)
with no network but forwards to servers on the host.

Why these choices: KVM on this machine (and CI's) is broken, so `-accel tcg` is forced.
QEMU user networking with `restrict=on` gives the guest DHCP and nothing else; each
`guestfwd` maps one guest address:port to a host 127.0.0.1 port through `socat` (one
process per connection, so ccxt's and boto3's parallel connections all work).  The test
reads the serial console from a file and waits for QEMU to exit (the guest powers off);
the QEMU process is ended by its own pid if it overstays.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# numpy 2 (and so FluxForge) needs x86-64-v2; QEMU's default TCG model (qemu64) lacks SSE4.2 and
# POPCNT, so numpy dies of SIGILL.  Every cloud VM and x86 box of the last decade has them.
X86_64_V2 = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16"
GUEST_HOST_IP = "10.0.2.100"  # the guest reaches the host's forwarded ports at this address


def aarch64_direct_boot(kernel: Path, initrd: Path, append: str) -> list[str]:
    """qemu-system-aarch64 on the generic `virt` board (cortex-a72: `-cpu max` is ~4x slower under
    TCG), started straight into `kernel` + `initrd` with `append` as the command line.  The Pi's
    VideoCore firmware cannot be emulated, so this boots the image's own kernel, initrd and root,
    not its boot chain."""
    return ["qemu-system-aarch64", "-accel", "tcg", "-machine", "virt", "-cpu", "cortex-a72",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", append]


class QemuVM:
    def __init__(self, disk: Path, workdir: Path, forwards: list[int], cpus: int = 2, memory_mb: int = 2048,
                 machine: list[str] | None = None):
        """`machine`: QEMU's argv up to the machine and boot options; default amd64 q35 with OVMF."""
        self.disk, self.workdir = disk, workdir
        self.serial = workdir / f"{disk.stem}.serial.log"
        if machine is None:
            self.vars = workdir / "OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, self.vars)
            machine = ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-cpu", X86_64_V2,
                       "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                       "-drive", f"if=pflash,format=raw,file={self.vars}"]
        fwd = "".join(f",guestfwd=tcp:{GUEST_HOST_IP}:{port}-cmd:socat - TCP:127.0.0.1:{port}" for port in forwards)
        self.argv = [
            *machine, "-smp", str(cpus), "-m", str(memory_mb),
            "-drive", f"file={disk},format=raw,if=virtio,cache=unsafe",
            "-netdev", f"user,id=n0,restrict=on{fwd}", "-device", "virtio-net-pci,netdev=n0",
            "-display", "none", "-monitor", "none", "-serial", f"file:{self.serial}", "-no-reboot",
        ]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "QemuVM":
        self.serial.unlink(missing_ok=True)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def console(self) -> str:
        return self.serial.read_text(errors="replace") if self.serial.exists() else ""

    def wait_exit(self, timeout: float) -> float:
        """Wait for the guest to power off (QEMU exits); returns the wall time of the boot."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            tail = self.console()[-4000:]
            raise AssertionError(f"the guest did not power off within {timeout:.0f} s; console tail:\n{tail}") from None
        out = self.proc.stdout.read().decode(errors="replace")
        assert self.proc.returncode == 0, f"qemu exited {self.proc.returncode}: {out[-2000:]}"
        return time.monotonic() - self.started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
