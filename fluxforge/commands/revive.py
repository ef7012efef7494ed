"""`fluxforge revive`: start again the services systemd gave up on (run by fluxforge-revive.timer)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("revive", help="reset and start the FluxForge services that are failed while "
                                      "fluxforge.target is up (root; fluxforge-revive.timer runs it)")
    p.add_argument("--dry-run", action="store_true", help="say what would be started, start nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..maintenance.revive import revive

    decisions = revive(dry_run=args.dry_run)
    if decisions is None:
        print("revive: systemd is not the init system here; nothing to do")
        return 0
    for d in decisions:
        if d.error:
            print(f"revive: {d.unit} {d.why}: could not start it: {d.error}")
        elif d.revive:
            print(f"revive: {d.unit} {d.why}: {'would start' if args.dry_run else 'started'} it again")
        else:
            print(f"revive: {d.unit} {d.why}: left alone")
    return 1 if any(d.error for d in decisions) else 0
