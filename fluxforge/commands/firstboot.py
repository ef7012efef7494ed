"""`fluxforge firstboot`: apply `fluxforge/` from the boot partition (run by fluxforge-firstboot.service)."""
from __future__ import annotations

import argparse
import subprocess
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from ..firstboot.boot_import import BOOT_DIRS

    p = sub.add_parser("firstboot", help="import config.yaml, credentials, hostname and authorized_keys "
                                         "from the boot partition's fluxforge/ folder (root)")
    p.add_argument("--boot-dir", action="append", type=Path, metavar="DIR",
                   help=f"boot partition mount point to look in, repeatable "
                        f"(default: {', '.join(str(d) for d in BOOT_DIRS)}; the first with fluxforge/config.yaml wins)")
    p.add_argument("--start", action="store_true",
                   help="after a good import, queue `systemctl start fluxforge.target` (without waiting for it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import EX_CONFIG
    from ..firstboot.boot_import import BOOT_DIRS, ERROR_FILE, find_source, run_import

    src = find_source(args.boot_dir or BOOT_DIRS)
    if src is None:
        print("firstboot: no fluxforge/config.yaml on a boot partition; nothing to import")
        return 0
    outcome = run_import(src)
    for item in outcome.imported:
        print(f"firstboot: imported {item} from {src}")
    if not outcome.ok:
        for line in outcome.errors:
            print(f"firstboot: {line}")
        print(f"firstboot: wrote {src / ERROR_FILE}; the FluxForge services stay down until it is fixed")
        return EX_CONFIG
    print(f"firstboot: {src / 'config.yaml'} is valid and installed as /etc/fluxforge/config.yaml")
    if args.start:
        # --no-block: this runs as a dependency of the services the target starts.
        subprocess.run(["systemctl", "start", "--no-block", "fluxforge.target"], check=False)
    return 0
