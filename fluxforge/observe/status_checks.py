"""Turn status facts into warnings: what needs attention, how bad, and what to do.

Why a table of codes: each warning has a stable `code` that monitoring can match
and that docs/operations.md explains one by one; the `hint` printed next to it
is the first thing to try.  Exit codes follow the monitoring-plugin convention:
0 all good, 1 at least one warning, 2 at least one critical problem.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..config import Config
from .unit_states import unit_problem

OK, WARNING, CRITICAL = 0, 1, 2

HINTS = {
    "no_data_dir": "check data_dir in the config; start fluxforge-collector so it creates it",
    "failed_segments": "read reason.txt in each failed segment (fluxforge inspect); fix, then mv it back to ready/",
    "etl_lag": "check fluxforge-etl: systemctl status fluxforge-etl; journalctl -u fluxforge-etl -p warning",
    "stale_active": "the collector is not rotating: check journalctl -u fluxforge-collector; a restart recovers it",
    "stream_stale": "check the collector and the network: journalctl -u fluxforge-collector EXCHANGE=<name>",
    "gaps": "the stream reconnects often: check network quality and journalctl -u fluxforge-collector EVENT=stream_gap (or stream_reconnect)",
    "dropped": "rows were lost: the queue overflowed or the disk was full; see EVENT=stream_dropped in the journal",
    "unrequested": "the exchange sends rows under a symbol not configured on that channel; if it is one of yours "
                   "under another name (Coinbase: a USDC product's trades/tickers as USD), add "
                   "`aliases: {REPORTED: CONFIGURED}` to the exchange entry",
    "disk_full_events": "the collector ran out of space: free disk space (docs/operations.md, full disk)",
    "disk_high": "retention deletes only data verified in S3: check fluxforge-sync runs and succeeds "
                 "(journalctl -u fluxforge-sync EVENT=retention_blocked_by_unsynced_data)",
    "disk_low_free": "free space is below collector.min_free_mb: the collector is dropping rows; free space now",
    "unreadable_files": "a bronze file cannot be read: fluxforge inspect it; the ETL will move it to failed/",
    "sync_stale": "check fluxforge-sync.timer / journalctl -u fluxforge-sync and the S3 endpoint",
    "sync_state_corrupt": "systemctl stop fluxforge-sync.timer; mv <data_dir>/state/sync.sqlite <data_dir>/state/sync.sqlite.corrupt "
                          "(and its -wal/-shm); systemctl start fluxforge-sync.timer: the next sync uploads and verifies "
                          "every local file again (same keys, same content)",
    "etl_disk_full": "the ETL is waiting for space and resumes by itself: free disk space (docs/operations.md, full disk)",
    "unit_failed": "systemctl status <unit>; journalctl -u <unit> -b; fix the cause, then systemctl restart <unit>",
    "unit_inactive": "systemctl start <unit> (and systemctl enable it if it should run at boot)",
}


@dataclass(frozen=True)
class StatusWarning:
    code: str
    severity: str  # "warning" | "critical"
    message: str

    def as_dict(self) -> dict[str, str]:
        return {**asdict(self), "hint": HINTS[self.code]}


def check(facts: dict[str, Any], cfg: Config) -> list[StatusWarning]:
    """Every threshold of cfg.status (and the retention watermarks) applied to `facts`."""
    th = cfg.status
    out: list[StatusWarning] = []

    def warn(code: str, message: str, severity: str = "warning") -> None:
        out.append(StatusWarning(code, severity, message))

    if not facts["data_dir_exists"]:
        warn("no_data_dir", f"data directory {facts['data_dir']} does not exist", "critical")
        return out + _unit_warnings(facts)
    segs = facts["segments"]
    if segs["failed"]["count"]:
        reason = segs["failed"].get("oldest_reason")
        warn("failed_segments", f"{segs['failed']['count']} segment(s) in failed/, oldest {segs['failed']['oldest']}"
                                + (f" ({reason})" if reason else ""))
    etl = facts["etl"]
    if etl["waiting"] and etl["lag_s"] > th.max_etl_lag:
        warn("etl_lag", f"{etl['waiting']} segment(s) waiting for the ETL; oldest {etl['oldest']} "
                        f"closed {human_age(etl['lag_s'])} ago (limit {human_age(th.max_etl_lag)})")
    active = segs["active"]
    rotate_by = cfg.collector.segment_max_seconds + max(300.0, 10 * cfg.collector.flush_interval)
    # (two active segments for a moment is normal: the previous one is being finished after rotation)
    if (active["oldest_age_s"] or 0) > rotate_by:
        warn("stale_active", f"{active['count']} active segment(s), oldest started {human_age(active['oldest_age_s'])} ago "
                             f"(rotation every {human_age(cfg.collector.segment_max_seconds)})")
    judge_all = not any(s["configured"] for s in facts["streams"])
    for s in facts["streams"]:
        name = f"{s['exchange']} {s['symbol'] or '(all symbols)'}"
        if s["symbol"] is not None and (s["configured"] or judge_all):
            age = s["last_message_age_s"]
            if age is None:
                warn("stream_stale", f"{name}: no message in the last hour")
            elif age > th.max_message_age:
                warn("stream_stale", f"{name}: last message {human_age(age)} ago (limit {human_age(th.max_message_age)})")
        if s["gaps_last_hour"] > th.max_gaps_per_hour:
            warn("gaps", f"{name}: {s['gaps_last_hour']} gap/resync/reconnect event(s) in the last hour "
                         f"(limit {th.max_gaps_per_hour})")
        if s["events_last_hour"].get("disk_full"):
            warn("disk_full_events", f"{name}: {s['events_last_hour']['disk_full']} disk_full event(s) in the last hour",
                 "critical")
    dropped = sum(s["dropped_last_hour"] for s in facts["streams"])
    if dropped > th.max_dropped_per_hour:
        warn("dropped", f"{dropped:,} row(s) dropped in the last hour (limit {th.max_dropped_per_hour})")
    unrequested = [s for s in facts["streams"] if s.get("unrequested_last_hour")]
    if unrequested:
        names = ", ".join(f"{s['exchange']} {s['symbol']}" for s in unrequested[:3])
        warn("unrequested", f"{sum(s['unrequested_last_hour'] for s in unrequested):,} row(s) in the last hour for "
                            f"symbols not configured ({names}{', ...' if len(unrequested) > 3 else ''}): not recorded")
    if facts["unreadable"]:
        warn("unreadable_files", f"{len(facts['unreadable'])} unreadable bronze file(s): {facts['unreadable'][0]}")
    disk = facts["disk"]
    if disk["free_bytes"] < disk["min_free_mb"] * 1024 * 1024:
        warn("disk_low_free", f"only {disk['free_bytes'] / 2**20:,.0f} MiB free on {disk['path']} "
                              f"(collector.min_free_mb {disk['min_free_mb']:g})", "critical")
    if disk["used_pct"] >= disk["high_watermark_pct"]:
        warn("disk_high", f"{disk['path']} is {disk['used_pct']:.1f}% full "
                          f"(retention high watermark {disk['high_watermark_pct']:g}%)")
    sync = facts.get("sync")
    if sync and sync.get("corrupt"):
        warn("sync_state_corrupt", sync["corrupt"] + "; nothing is uploaded and retention cannot free verified data",
             "critical")
    if sync and sync.get("enabled") and sync.get("stale"):
        warn("sync_stale", sync["stale"])
    return out + _unit_warnings(facts)


def _unit_warnings(facts: dict[str, Any]) -> list[StatusWarning]:
    out = []
    for unit in facts.get("units") or []:
        problem = unit_problem(unit)
        if problem:
            severity, message = problem
            out.append(StatusWarning("unit_failed" if severity == "critical" else "unit_inactive", severity, message))
        text = unit.get("statustext", "")
        if unit.get("id") == "fluxforge-etl.service" and "DISK FULL" in text:   # the ETL's STATUS=
            out.append(StatusWarning("etl_disk_full", "critical", f"fluxforge-etl.service: {text}"))
    return out


def exit_code(warnings: list[StatusWarning]) -> int:
    if any(w.severity == "critical" for w in warnings):
        return CRITICAL
    return WARNING if warnings else OK


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = int(round(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"
