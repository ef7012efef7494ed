"""The terminal view of `fluxforge status`: understand the appliance in ten seconds.

Why separate from the facts: `--json` is the machine interface; this module is
only layout (aligned columns, human ages and sizes, warnings with their hint).
"""
from __future__ import annotations

from typing import Any

from .status_checks import StatusWarning, human_age
from ..bronze.segments import STATES


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def render(facts: dict[str, Any], warnings: list[StatusWarning]) -> str:
    lines = [f"FluxForge status at {facts['time']}   data_dir {facts['data_dir']}", ""]
    segs = facts["segments"]
    parts = []
    for state in STATES:
        s = segs[state]
        part = f"{state} {s['count']}"
        if s["count"]:
            part += f" (oldest {human_age(s['oldest_age_s'])}, {human_bytes(s['bytes'])})"
        parts.append(part)
    lines.append("segments  " + "   ".join(parts))
    etl = facts["etl"]
    feats = facts["features"]
    trees = ", ".join(f"{tree} {f['files']}" for tree, f in feats.items() if f["files"] or tree in ("hf", "bars"))
    lines.append(f"etl       lag {human_age(etl['lag_s'])}, {etl['waiting']} segment(s) waiting   "
                 f"features (files): {trees}, {human_bytes(sum(f['bytes'] for f in feats.values()))}")
    late = (facts.get("etl_counters") or {}).get("late_dropped") or 0
    if late:
        lines.append(f"etl       {late} row(s) dropped as late, last in {facts['etl_counters'].get('last_late_segment')} "
                     "(older than what was processed: see docs/operations.md, clock steps and restores)")
    tickers = ticker_issues_line(facts.get("etl_counters") or {})
    if tickers:
        lines.append(f"etl       tickers: {tickers}")
    lines.append("")
    lines += _stream_table(facts["streams"])
    if facts["events_last_hour"]:
        lines.append("events    last hour: " + ", ".join(f"{e} {n}" for e, n in facts["events_last_hour"].items()))
    disk = facts["disk"]
    lines.append("")
    lines.append(f"disk      {disk['path']}: {disk['used_pct']:.1f}% used of {human_bytes(disk['total_bytes'])}, "
                 f"{human_bytes(disk['free_bytes'])} free (retention at {disk['high_watermark_pct']:g}% -> "
                 f"{disk['low_watermark_pct']:g}%); FluxForge data {human_bytes(disk['data_bytes'])}")
    sync = facts.get("sync")
    if sync is not None:
        lines.append("sync      " + sync.get("summary", ""))
    units = facts.get("units")
    installed = [u for u in units or [] if u.get("loadstate") == "loaded"]
    if units is None:
        lines.append("units     (systemd not present)")
    elif not installed:
        lines.append("units     (FluxForge units not installed)")
    for i, u in enumerate(installed):
        state = f"{u.get('activestate', '?')} ({u.get('substate', '?')})"
        if u.get("unitfilestate"):
            state += f", {u['unitfilestate']}"
        lines.append(f"{'units' if i == 0 else '':<10}{u.get('id', '?'):<32}{state}")
    lines += _live_line(installed)
    lines.append("")
    if not warnings:
        lines.append("OK: nothing needs attention")
    for w in warnings:
        d = w.as_dict()
        lines.append(f"{w.severity.upper():<9}[{w.code}] {w.message}")
        lines.append(f"{'':<9}-> {d['hint']}")
    return "\n".join(lines)


def _stream_table(streams: list[dict[str, Any]]) -> list[str]:
    if not streams:
        return ["streams   (no exchange configured and no data seen in the last hour)"]
    header = ("exchange", "symbol", "last msg", "rate/s", "msgs 1h", "gaps 1h", "dropped 1h")
    rows = [header]
    for s in streams:
        if s["symbol"] is None:  # exchange-wide events (reconnects, drops): no messages of its own
            age, rate, msgs = "-", "-", "-"
        else:
            age = "never" if s["last_message_age_s"] is None else human_age(s["last_message_age_s"]) + " ago"
            rate, msgs = f"{s['rate_per_s']:.1f}", f"{s['messages_last_hour']:,}"
        rows.append((s["exchange"], s["symbol"] or "(all)", age, rate, msgs,
                     str(s["gaps_last_hour"]), f"{s['dropped_last_hour']:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    out = []
    for i, r in enumerate(rows):
        cells = [c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))]
        out.append(f"{'streams' if i == 0 else '':<10}" + "  ".join(cells))
    return out


def _live_line(units: list[dict[str, Any]]) -> list[str]:
    """The ETL's live-features part of its STATUS= (event-to-publish latency), when it runs."""
    for u in units:
        if u.get("id") == "fluxforge-etl.service" and u.get("activestate") == "active":
            for part in str(u.get("statustext", "")).split("; "):
                if part.startswith("live "):
                    return [f"{'live':<10}{part[5:]}"]
    return []


_TICKER_WORDS = {"missing_side": "missing a side"}


def ticker_issues_line(counters: dict) -> str:
    """'2 late, 1 duplicate dropped; 3 crossed, 4 missing a side kept without a mid' from the ETL's running
    `tickers_<kind>` counters ('' when all are 0)."""
    def part(kinds: tuple[str, ...], what: str) -> str:
        named = [f"{int(counters.get(f'tickers_{k}') or 0)} {_TICKER_WORDS.get(k, k)}" for k in kinds
                 if counters.get(f"tickers_{k}")]
        return f"{', '.join(named)} {what}" if named else ""
    return "; ".join(p for p in (part(("late", "duplicate", "untimed"), "dropped"),
                                 part(("crossed", "missing_side"), "kept without a mid")) if p)
