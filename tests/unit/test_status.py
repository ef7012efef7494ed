"""`fluxforge status --json` against prepared data directories, one per warning."""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from bronze_builders import NS, book_rows, event_rows, merge, now_ns, spaced, trade_rows, write_segment
from fluxforge.cli import main
from fluxforge.config import Config

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def write_config(tmp_path: Path, **overrides) -> Path:
    """A config for tmp_path/data; disk thresholds neutral unless a test sets them."""
    data = {
        "data_dir": str(tmp_path / "data"),
        "host_id": "testhost",
        "exchanges": [{"name": "binance", "symbols": SYMBOLS}],
        "retention": {"disk_high_watermark": 100, "disk_low_watermark": 50},
        "collector": {"min_free_mb": 0},
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def healthy_segments(t: int) -> list[tuple]:
    """(state, start, seq, channels, closed) of a collector writing at `t` (ns): the active journal
    and one transformed segment in done/."""
    now = datetime.fromtimestamp(t / NS, timezone.utc)
    return [
        ("done", now - timedelta(minutes=30), 1, {
            "orderbook": merge(*(book_rows("binance", s, spaced(t - 1800 * NS, 1700, 2)) for s in SYMBOLS)),
            "trades": trade_rows("binance", "BTC/USDT", spaced(t - 1800 * NS, 1700, 1)),
        }, now - timedelta(seconds=100)),
        ("active", now - timedelta(seconds=100), 2, {
            "orderbook": merge(*(book_rows("binance", s, spaced(t - 99 * NS, 98, 10)) for s in SYMBOLS)),
            "trades": trade_rows("binance", "BTC/USDT", spaced(t - 99 * NS, 98, 5)),
            "events": event_rows("binance", "BTC/USDT", [t - 50 * NS], "reconnect"),
        }, None),
    ]


def healthy(tmp_path: Path, t: int | None = None) -> Path:
    """Collector writing now (active journal), one transformed segment in done/: nothing to report."""
    data = tmp_path / "data"
    for state, start, seq, channels, closed in healthy_segments(now_ns() if t is None else t):
        write_segment(data, state, start, seq, channels, closed=closed)
    (data / "features").mkdir()
    return data


def status(capsys, config: Path, *extra: str) -> tuple[int, dict]:
    rc = main(["status", "--json", "--no-units", "--config", str(config), *extra])
    facts = json.loads(capsys.readouterr().out)
    assert facts["exit_code"] == rc
    return rc, facts


def codes(facts: dict) -> set[str]:
    return {w["code"] for w in facts["warnings"]}


def test_healthy_appliance_exits_zero_with_facts(tmp_path, capsys):
    t = now_ns()
    healthy(tmp_path, t)
    # what the facts must be depends on when `status` reads the clock: bracket that moment
    # (a loaded machine may run it long after the data was written) and expect its values there
    before = time.time_ns()
    rc, facts = status(capsys, write_config(tmp_path))
    after = time.time_ns()
    assert facts["warnings"] == [] and rc == 0
    assert facts["segments"]["active"]["count"] == 1 and facts["segments"]["done"]["count"] == 1
    started = int((datetime.fromtimestamp(t / NS, timezone.utc) - timedelta(seconds=100)).timestamp()) * NS
    assert (before - started) / NS - 0.1 <= facts["segments"]["active"]["oldest_age_s"] <= (after - started) / NS + 0.1
    assert facts["etl"] == {"waiting": 0, "lag_s": 0.0, "oldest": None}
    btc = next(s for s in facts["streams"] if s["symbol"] == "BTC/USDT")
    btc_recv = sorted(r for _state, _start, _seq, channels, _closed in healthy_segments(t)
                      for rows in channels.values() if "kind" in rows or "trade_id" in rows
                      for sym, r in zip(rows["symbol"], rows["recv_ns"]) if sym == "BTC/USDT")
    last = btc_recv[-1]
    assert btc["configured"] and (before - last) / NS - 0.001 <= btc["last_message_age_s"] <= (after - last) / NS + 0.001

    def rate_at(now: int) -> float:  # rows of the last 5 minutes (all rows are older than `now`) per second
        return sum(r >= now - 300 * NS for r in btc_recv) / 300

    # about (980 + 490 + 400 + 200) / 300 when status runs at once: active 10 books/s + 5 trades/s
    # for 98 s, done segment 2 books/s + 1 trade/s for its last 200 s; fewer as the window slides on
    assert rate_at(after) - 0.0005 <= btc["rate_per_s"] <= rate_at(before) + 0.0005
    assert btc["messages_last_hour"] == 980 + 490 + 3400 + 1700
    assert btc["events_last_hour"] == {"reconnect": 1} and btc["gaps_last_hour"] == 1
    assert facts["events_last_hour"] == {"reconnect": 1}
    assert facts["disk"]["high_watermark_pct"] == 100 and facts["disk"]["data_bytes"] > 0


def test_text_view_shows_streams_and_ok(tmp_path, capsys):
    healthy(tmp_path)
    assert main(["status", "--no-units", "--config", str(write_config(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "segments  active 1" in out and "done 1" in out
    assert "binance   BTC/USDT" in out
    assert out.rstrip().endswith("OK: nothing needs attention")


def test_missing_data_dir_is_critical(tmp_path, capsys):
    rc, facts = status(capsys, write_config(tmp_path))
    assert rc == 2 and codes(facts) == {"no_data_dir"}


def test_failed_segment(tmp_path, capsys):
    data = healthy(tmp_path)
    seg = write_segment(data, "failed", datetime.now(timezone.utc) - timedelta(hours=5), 9,
                        {"trades": trade_rows("binance", "BTC/USDT", [now_ns() - 5 * 3600 * NS])})
    (seg / "reason.txt").write_text("etl: corrupt footer\n")
    rc, facts = status(capsys, write_config(tmp_path))
    assert rc == 1 and codes(facts) == {"failed_segments"}
    assert facts["warnings"][0]["message"] == f"1 segment(s) in failed/, oldest {seg.name} (etl: corrupt footer)"
    assert facts["segments"]["failed"]["oldest_age_s"] > 5 * 3600 - 60


def test_etl_lag(tmp_path, capsys):
    data = healthy(tmp_path)
    closed = datetime.now(timezone.utc) - timedelta(minutes=40)
    for seq, state in ((3, "processing"), (4, "ready")):
        write_segment(data, state, closed - timedelta(minutes=60), seq,
                      {"trades": trade_rows("binance", "BTC/USDT", [now_ns() - 6000 * NS])},
                      closed=closed + timedelta(minutes=seq))
    rc, facts = status(capsys, write_config(tmp_path))
    assert rc == 1 and codes(facts) == {"etl_lag"}
    assert facts["etl"]["waiting"] == 2 and facts["etl"]["oldest"].endswith("-000003")
    assert 35 * 60 < facts["etl"]["lag_s"] < 40 * 60
    # the same data is fine with a looser threshold
    rc, facts = status(capsys, write_config(tmp_path, status={"max_etl_lag": 3600}))
    assert rc == 0


def test_rotation_in_progress_is_not_a_warning(tmp_path, capsys):
    data = healthy(tmp_path)  # the active segment started 100 s ago
    write_segment(data, "active", datetime.now(timezone.utc) - timedelta(minutes=61), 0,
                  {"trades": trade_rows("binance", "BTC/USDT", [now_ns() - 200 * NS])})  # being finished
    rc, facts = status(capsys, write_config(tmp_path))
    assert facts["segments"]["active"]["count"] == 2 and rc == 0


def test_active_segment_not_rotated(tmp_path, capsys):
    data = healthy(tmp_path)
    write_segment(data, "active", datetime.now(timezone.utc) - timedelta(hours=3), 0,
                  {"trades": trade_rows("binance", "BTC/USDT", [now_ns() - 3 * 3600 * NS])})
    rc, facts = status(capsys, write_config(tmp_path))
    assert rc == 1 and codes(facts) == {"stale_active"}
    assert facts["warnings"][0]["message"].startswith("2 active segment(s), oldest started 3h00m ago")


def test_stale_and_missing_streams(tmp_path, capsys):
    data = tmp_path / "data"
    t = now_ns()
    write_segment(data, "ready", datetime.now(timezone.utc) - timedelta(minutes=20), 1,
                  {"orderbook": book_rows("binance", "BTC/USDT", spaced(t - 1200 * NS, 600, 1))})
    rc, facts = status(capsys, write_config(tmp_path))
    msgs = [w["message"] for w in facts["warnings"] if w["code"] == "stream_stale"]
    assert rc == 1 and codes(facts) == {"stream_stale"}
    assert msgs[0].startswith("binance BTC/USDT: last message 10m ago")
    assert msgs[1] == "binance ETH/USDT: no message in the last hour"
    eth = next(s for s in facts["streams"] if s["symbol"] == "ETH/USDT")
    assert eth["last_message_age_s"] is None and eth["rate_per_s"] == 0


def test_gaps_over_threshold(tmp_path, capsys):
    data = healthy(tmp_path)
    t = now_ns()
    write_segment(data, "done", datetime.now(timezone.utc) - timedelta(minutes=50), 5, {
        "events": merge(event_rows("binance", "ETH/USDT", spaced(t - 2900 * NS, 60, 0.1), "gap"),
                        event_rows("binance", "ETH/USDT", [t - 7200 * NS], "gap")),  # older than an hour
    })
    rc, facts = status(capsys, write_config(tmp_path))
    assert rc == 1 and codes(facts) == {"gaps"}
    eth = next(s for s in facts["streams"] if s["symbol"] == "ETH/USDT")
    assert eth["gaps_last_hour"] == 6 and eth["events_last_hour"] == {"gap": 6}
    assert "binance ETH/USDT: 6 gap/resync/reconnect event(s)" in facts["warnings"][0]["message"]


def test_dropped_rows_and_disk_full_events(tmp_path, capsys):
    data = healthy(tmp_path)
    t = now_ns()
    write_segment(data, "ready", datetime.now(timezone.utc) - timedelta(minutes=10), 6, {
        "events": merge(event_rows("binance", None, [t - 500 * NS], "dropped", count=1234),
                        event_rows("binance", None, [t - 400 * NS], "disk_full")),
    })
    rc, facts = status(capsys, write_config(tmp_path))
    assert rc == 2 and codes(facts) == {"dropped", "disk_full_events"}
    assert any(w["message"] == "1,234 row(s) dropped in the last hour (limit 0)" for w in facts["warnings"])
    assert {s["symbol"] for s in facts["streams"]} == {"BTC/USDT", "ETH/USDT", None}


def test_disk_above_high_watermark(tmp_path, capsys):
    healthy(tmp_path)
    cfg = write_config(tmp_path, retention={"disk_high_watermark": 0.001, "disk_low_watermark": 0.001})
    rc, facts = status(capsys, cfg)
    assert rc == 1 and codes(facts) == {"disk_high"}
    assert facts["disk"]["used_pct"] >= 0.001


def test_disk_free_below_collector_minimum_is_critical(tmp_path, capsys):
    healthy(tmp_path)
    rc, facts = status(capsys, write_config(tmp_path, collector={"min_free_mb": 10**12}))
    assert rc == 2 and codes(facts) == {"disk_low_free"}


def test_unreadable_bronze_file(tmp_path, capsys):
    data = healthy(tmp_path)
    seg = write_segment(data, "ready", datetime.now(timezone.utc) - timedelta(minutes=5), 7,
                        {"trades": trade_rows("binance", "BTC/USDT", [now_ns()])})
    (seg / "orderbook.parquet").write_bytes(b"PAR1 truncated")
    rc, facts = status(capsys, write_config(tmp_path))
    assert rc == 1 and codes(facts) == {"unreadable_files"}
    assert facts["unreadable"][0].startswith(f"{seg.name}/orderbook")


@pytest.mark.parametrize("move", ["claimed", "finished"])
def test_a_segment_moving_on_while_status_reads_it_is_not_unreadable(tmp_path, capsys, monkeypatch, move):
    """The ETL claims a ready segment (ready/ -> processing/) after status found its Parquet file and
    before it opened it (FileNotFoundError), or the collector finishes an active one (journal ->
    Parquet, active/ -> ready/) just before status looks into it: the segment is read where it
    went, not reported unreadable (seen once in a fresh CI's fleet status) nor left out of the counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from fluxforge.bronze.journal import JournalScan, iter_journal
    from fluxforge.bronze.schemas import CHANNEL_SCHEMAS
    from fluxforge.bronze.segments import SegmentStore
    from fluxforge.observe import stream_health
    data = healthy(tmp_path)
    rows = trade_rows("binance", "ETH/USDT", spaced(now_ns() - 20 * NS, 10, 1))
    seg = write_segment(data, "ready" if move == "claimed" else "active",
                        datetime.now(timezone.utc) - timedelta(seconds=30), 7, {"trades": rows})
    store = SegmentStore(data / "segments")
    moved = []

    if move == "claimed":
        real = pq.read_table

        def read_table(path, *a, **k):
            if str(path) == str(seg / "trades.parquet") and not moved:
                moved.append(os.rename(seg, store.path("processing", seg.name)))
            return real(path, *a, **k)
        monkeypatch.setattr(stream_health.pq, "read_table", read_table)
    else:
        real = stream_health._read_channel

        def read_channel(path, channel, columns):
            if path == seg and channel == "trades" and not moved:
                journal = seg / "trades.arrows"  # as the collector finishes it: Parquet, then ready/
                pq.write_table(pa.Table.from_batches(list(iter_journal(journal, CHANNEL_SCHEMAS["trades"], JournalScan())),
                                                     schema=CHANNEL_SCHEMAS["trades"]), seg / "trades.parquet")
                journal.unlink()
                moved.append(os.rename(seg, store.path("ready", seg.name)))
            return real(path, channel, columns)
        monkeypatch.setattr(stream_health, "_read_channel", read_channel)

    rc, facts = status(capsys, write_config(tmp_path))
    assert moved and not facts["unreadable"], facts["unreadable"]
    eth = [s for s in facts["streams"] if s["symbol"] == "ETH/USDT"][0]
    counted = {s["symbol"]: s["messages_last_hour"] for s in facts["streams"]}
    monkeypatch.undo()
    _, again = status(capsys, write_config(tmp_path))  # the same data at rest
    assert counted == {s["symbol"]: s["messages_last_hour"] for s in again["streams"]}, eth


def test_data_dir_without_config(tmp_path, capsys, monkeypatch):
    data = healthy(tmp_path)
    monkeypatch.setenv("FLUXFORGE_CONFIG", str(tmp_path / "absent.yaml"))
    rc = main(["status", "--json", "--no-units", "--data-dir", str(data)])
    facts = json.loads(capsys.readouterr().out)
    # default thresholds: only streams seen in the data are judged, and they are fresh
    assert "stream_stale" not in codes(facts)
    assert facts["data_dir"] == str(data)
    assert rc == facts["exit_code"]


def test_explicit_missing_config_is_a_config_error(tmp_path, capsys):
    rc = main(["status", "--config", str(tmp_path / "nope.yaml"), "--data-dir", str(tmp_path)])
    assert rc == 78
    assert "config file not found" in capsys.readouterr().err


def test_status_by_hand_does_not_need_the_units_credentials(tmp_path, capsys, monkeypatch):
    """An operator runs `fluxforge status` in a shell, where $CREDENTIALS_DIRECTORY (LoadCredential=)
    is not set: the secrets it never uses must not turn it into a config error (exit 78)."""
    healthy(tmp_path)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    config = write_config(tmp_path, exchanges=[{"name": "binance", "symbols": SYMBOLS,
                                                "ccxt": {"apiKey": "${credential:fluxforge_binance_key}"}}])
    rc, facts = status(capsys, config)
    assert rc == 0 and facts["warnings"] == []
    assert main(["config", "check", "--config", str(config)]) == 78   # a service still refuses it
    assert "fluxforge_binance_key" in capsys.readouterr().err


def test_status_thresholds_are_in_the_example_config():
    text = (Path(__file__).resolve().parents[2] / "config" / "config.example.yaml").read_text()
    for field in type(Config().status).model_fields:
        assert f"  {field}:" in text


def _sync_config(tmp_path: Path, max_sync_age: float = 7200) -> Path:
    return write_config(tmp_path, sync={"enabled": True, "bucket": "archive", "require_time_sync": False},
                        status={"max_sync_age": max_sync_age})


def _age_files(seg: Path, seconds: float) -> None:
    import os
    import time
    t = time.time() - seconds
    for f in seg.iterdir():
        os.utime(f, (t, t))


def test_sync_backlog_older_than_threshold(tmp_path, capsys):
    data = healthy(tmp_path)
    seg = next((data / "segments" / "done").iterdir())
    _age_files(seg, 3 * 3600)
    rc, facts = status(capsys, _sync_config(tmp_path))
    assert rc == 1 and codes(facts) == {"sync_stale"}
    sync = facts["sync"]
    assert sync["enabled"] and sync["last_upload"] is None and sync["uploaded_files"] == 0
    assert sync["backlog_files"] == len(list(seg.iterdir())) and sync["backlog_bytes"] > 0
    assert sync["oldest_pending_age_s"] > 3 * 3600 - 60
    assert "last verified upload never" in facts["warnings"][0]["message"]
    assert not (data / "state" / "sync.sqlite").exists()  # status never creates the sync db


def test_sync_state_of_the_sync_branch_is_read(tmp_path, capsys):
    from fluxforge.config import load_config
    from fluxforge.sync.layout import segment_files
    from fluxforge.sync.state import UploadState

    data = healthy(tmp_path)
    seg = next((data / "segments" / "done").iterdir())
    _age_files(seg, 3 * 3600)
    cfg_path = _sync_config(tmp_path)
    with UploadState(load_config(cfg_path).state_dir) as state:
        for f in segment_files(seg):
            state.record(f.logical, f.path.stat(), "CRC32C", "x", 0)
    rc, facts = status(capsys, cfg_path)
    assert rc == 0 and facts["warnings"] == []
    sync = facts["sync"]
    assert sync["backlog_files"] == 0 and sync["uploaded_files"] == len(list(seg.iterdir()))
    assert 0 <= sync["last_upload_age_s"] < 120
    # a file rewritten after its upload is pending again
    part = seg / "trades.parquet"
    part.write_bytes(part.read_bytes())
    _age_files(seg, 3 * 3600 + 5)
    rc, facts = status(capsys, cfg_path)
    assert facts["sync"]["backlog_files"] >= 1 and codes(facts) == {"sync_stale"}


def _damaged_page(db_path: Path) -> None:
    """A real sync db whose header is intact but whose table pages are overwritten."""
    from fluxforge.sync.state import UploadState
    with UploadState(db_path.parent) as state:
        st = os.stat(db_path)
        for i in range(3000):
            state.record(f"features/hf/x=1/part-{i:05d}.parquet", st, "CRC32C", "c" * 12, 0)
    import sqlite3
    sqlite3.connect(db_path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    with open(db_path, "r+b") as f:
        f.seek(4096 * 3)
        f.write(os.urandom(4096 * 4))


@pytest.mark.parametrize("damage", ["garbage", "damaged_page"])
@pytest.mark.parametrize("enabled", [True, False])
def test_corrupt_sync_database_is_a_critical_warning_with_the_fix(tmp_path, capsys, damage, enabled):
    data = healthy(tmp_path)
    db = data / "state" / "sync.sqlite"
    db.parent.mkdir()
    if damage == "garbage":
        db.write_bytes(b"this is not sqlite" * 100)
    else:
        _damaged_page(db)
    cfg = _sync_config(tmp_path) if enabled else write_config(tmp_path)
    rc, facts = status(capsys, cfg)
    assert rc == 2 and codes(facts) == {"sync_state_corrupt"}
    [w] = facts["warnings"]
    assert w["severity"] == "critical" and str(db) in w["message"] and "corrupt" in w["message"]
    assert "sync.sqlite.corrupt" in w["hint"]


def test_sync_disabled_is_not_judged(tmp_path, capsys):
    data = healthy(tmp_path)
    _age_files(next((data / "segments" / "done").iterdir()), 3 * 3600)
    rc, facts = status(capsys, write_config(tmp_path))
    assert rc == 0 and facts["sync"] == {"enabled": False, "bucket": None, "stale": None, "corrupt": None,
                                         "summary": "disabled (sync.enabled: false)"}


def test_unit_states_parsing_and_judgement():
    from fluxforge.observe.unit_states import parse_show, unit_problem

    text = ("Id=fluxforge-collector.service\nLoadState=loaded\nActiveState=failed\nSubState=failed\n"
            "Result=exit-code\nUnitFileState=enabled\n\n"
            "Id=fluxforge-etl.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead\n"
            "Result=success\nUnitFileState=enabled\n\n"
            "Id=fluxforge-sync.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead\n"
            "Result=success\nUnitFileState=static\n\n"
            "Id=fluxforge-compact.timer\nLoadState=not-found\nActiveState=inactive\n")
    units = [{k.lower(): v for k, v in u.items()} for u in parse_show(text)]
    assert [u["id"] for u in units] == ["fluxforge-collector.service", "fluxforge-etl.service",
                                        "fluxforge-sync.service", "fluxforge-compact.timer"]
    assert unit_problem(units[0]) == ("critical", "fluxforge-collector.service has failed (result: exit-code)")
    assert unit_problem(units[1]) == ("warning", "fluxforge-etl.service is inactive (dead) although enabled")
    assert unit_problem(units[2]) is None  # a timer's oneshot job between runs
    assert unit_problem(units[3]) is None  # not installed


def test_text_view_shows_the_etls_live_latency():
    from fluxforge.etl.live_latency import LatencyWindow
    from fluxforge.observe.status_text import _live_line

    window = LatencyWindow()
    window.add([1.0, 1.2, 1.4, 6.0])
    etl = {"id": "fluxforge-etl.service", "activestate": "active",
           "statustext": f"backlog 0 segments; done 3, failed 0; live {window.summary()}"}
    assert _live_line([etl]) == [f"{'live':<10}event-to-publish p50 1.30s p99 5.86s"]
    assert _live_line([{**etl, "activestate": "inactive"}]) == []


def test_latency_window_share_above_a_target_counts_the_window_only():
    from fluxforge.etl.live_latency import LatencyWindow

    window = LatencyWindow(size=4)
    assert window.share_above(1.0) is None
    window.add([9.0, 9.0, 0.5, 0.5, 2.0, 0.1])  # the two 9 s samples have left the window of 4
    assert window.share_above(1.0) == 0.25
    assert window.share_above(2.0) == 0.0  # later than, not at


def test_unit_warnings_reach_the_exit_code(tmp_path):
    from fluxforge.config import load_config
    from fluxforge.observe.status import collect
    from fluxforge.observe.status_checks import check, exit_code

    healthy(tmp_path)
    cfg = load_config(write_config(tmp_path))
    facts = collect(cfg, with_units=False)
    facts["units"] = [{"id": "fluxforge-etl.service", "loadstate": "loaded", "activestate": "failed",
                       "substate": "failed", "result": "signal", "unitfilestate": "enabled"}]
    warnings = check(facts, cfg)
    assert [(w.code, w.severity) for w in warnings] == [("unit_failed", "critical")]
    assert exit_code(warnings) == 2


def test_etl_waiting_on_a_full_disk_is_reported(tmp_path):
    """The ETL's STATUS= (systemctl show StatusText) says DISK FULL: `fluxforge status` says disk_full."""
    from fluxforge.config import load_config
    from fluxforge.observe.status import collect
    from fluxforge.observe.status_checks import check, exit_code
    from fluxforge.observe.unit_states import PROPERTIES

    assert "StatusText" in PROPERTIES
    healthy(tmp_path)
    cfg = load_config(write_config(tmp_path))
    facts = collect(cfg, with_units=False)
    facts["units"] = [{"id": "fluxforge-etl.service", "loadstate": "loaded", "activestate": "active",
                       "substate": "running", "result": "success", "unitfilestate": "enabled",
                       "statustext": "DISK FULL (disk_full), waiting for space: backlog 3 segments"}]
    warnings = check(facts, cfg)
    assert [(w.code, w.severity) for w in warnings] == [("etl_disk_full", "critical")]
    assert "waiting for space" in warnings[0].message and exit_code(warnings) == 2


def test_unreadable_data_dir_is_unknown_not_a_traceback():
    """An operator outside the fluxforge group: exit 3 (UNKNOWN) with one line, like a monitoring plugin.

    Run as a real unprivileged process (as root: `setpriv` to nobody, so the kernel
    really refuses; otherwise the data dir is made unreadable to its own owner)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    parent = Path(tempfile.mkdtemp(prefix="ff-perm-", dir="/tmp"))
    try:
        parent.chmod(0o755)
        data = parent / "data"
        (data / "segments" / "ready").mkdir(parents=True)
        cmd = [sys.executable, "-m", "fluxforge.cli", "status", "--no-units", "--config", "/dev/null",
               "--data-dir", str(data)]
        if os.geteuid() == 0:
            data.chmod(0o750)  # as tmpfiles.d creates /var/lib/fluxforge (owner root: "others" are locked out)
            cmd = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *cmd]
        else:
            data.chmod(0o000)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PYTHONDONTWRITEBYTECODE": "1"}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/", env=env)
        assert r.returncode == 3, r.stderr
        assert r.stderr.strip() == (f"fluxforge: cannot read {data}: permission denied "
                                    "(run as root or as a member of the fluxforge group)")
    finally:
        (parent / "data").chmod(0o755)
        shutil.rmtree(parent)


def test_text_view_lists_installed_units_only(tmp_path):
    from fluxforge.config import load_config
    from fluxforge.observe.status import collect
    from fluxforge.observe.status_checks import check
    from fluxforge.observe.status_text import render

    healthy(tmp_path)
    cfg = load_config(write_config(tmp_path))
    facts = collect(cfg, with_units=False)
    facts["units"] = [
        {"id": "fluxforge-collector.service", "loadstate": "loaded", "activestate": "active",
         "substate": "running", "unitfilestate": "enabled"},
        {"id": "fluxforge-sync.timer", "loadstate": "not-found", "activestate": "inactive"},
    ]
    text = render(facts, check(facts, cfg))
    assert "units     fluxforge-collector.service     active (running), enabled" in text
    assert "fluxforge-sync.timer" not in text
    facts["units"] = [{"id": "fluxforge-sync.timer", "loadstate": "not-found"}]
    assert "units     (FluxForge units not installed)" in render(facts, [])


def test_every_feature_tree_is_counted(tmp_path, capsys):
    """hf and bars always, and every other tree the ETL wrote (trade products, ticker, per-trade),
    files and bytes as on disk; in-flight hidden files are not counted."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = healthy(tmp_path)
    written = {"hf": 1, "bars/interval=1s": 2, "trade_bars/interval=5s": 3, "dollar_bars": 1, "ticker": 2}
    size: dict[str, int] = {}
    for tree, n in written.items():
        for i in range(n):
            path = data / "features" / tree / "exchange=binance" / "symbol=BTC-USDT" / "date=2026-12-02" / f"part-{i}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"x": list(range(i + 1))}), path)
            size[tree.split("/")[0]] = size.get(tree.split("/")[0], 0) + path.stat().st_size
    (path.parent / ".part-9.parquet.tmp").write_bytes(b"in flight")
    _rc, facts = status(capsys, write_config(tmp_path))
    got = {tree: (f["files"], f["bytes"]) for tree, f in facts["features"].items()}
    assert got == {tree.split("/")[0]: (n, size[tree.split("/")[0]]) for tree, n in written.items()}
    main(["status", "--no-units", "--config", str(write_config(tmp_path))])
    out = capsys.readouterr().out
    assert "features (files): hf 1, bars 2, dollar_bars 1, ticker 2, trade_bars 3," in out
