"""The services' Prometheus exposition, parsed back with prometheus_client's own parser.

Each test drives the real parts (a collector's queue, recorder and writer flushing
real journals; the ETL service processing real segments; a oneshot's textfile)
and checks what a Prometheus server would read: names, types and label sets as
declared in `observe/metric_defs.py`.
"""
from __future__ import annotations

import asyncio
import socket
import time
import urllib.request

import pyarrow as pa
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from etl_support import LedgerEngine, synthetic_market, write_segments
from fluxforge.collector.app import Collector
from fluxforge.config import Config
from fluxforge.etl.service import EtlService
from fluxforge.observe import metric_defs as M
from fluxforge.observe.metrics import MetricsEndpoint
from fluxforge.observe.textfile import job_metrics, textfile_path


def families(registry) -> dict:
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def samples(fams: dict, d: M.MetricDef, suffix: str = "") -> dict:
    """{labels tuple in declared order: value} of one family's samples named name+suffix."""
    fam = fams[d.name]
    name = d.name + (suffix or ("_total" if d.kind == M.COUNTER else ""))
    return {tuple(s.labels[k] for k in d.labels): s.value for s in fam.samples if s.name == name}


def assert_declared(fams: dict, defs: list[M.MetricDef]) -> None:
    for d in defs:
        assert d.name in fams, f"{d.name} not exposed"
        assert fams[d.name].type == d.kind, (d.name, fams[d.name].type)
        for s in fams[d.name].samples:
            extra = {"le"} if d.kind == M.HISTOGRAM else set()
            assert set(s.labels) == set(d.labels) | (extra if s.name.endswith("_bucket") else set()), (s.name, s.labels)


def collector_config(tmp_path, **metrics) -> Config:
    return Config.model_validate({
        "data_dir": str(tmp_path / "data"), "host_id": "t",
        "exchanges": [{"name": "binance", "symbols": ["BTC/USDT", "ETH/USDT"]}],
        "metrics": {"textfile_dir": str(tmp_path / "textfiles"), **metrics},
    })


def test_collector_exposition_counts_each_flush(tmp_path):
    cfg = collector_config(tmp_path)

    async def scenario():
        c = Collector(cfg)
        await c.writer.start()
        now = time.time_ns()
        for i in range(5):
            c.recorder.trade("binance", "BTC/USDT", {"id": i, "price": 100.0, "amount": 1.0, "side": "buy",
                                                      "timestamp": now // 1_000_000}, now)
        for _ in range(2):
            c.recorder.ticker("binance", "ETH/USDT", {"bid": 1.0, "ask": 2.0, "timestamp": now // 1_000_000}, now)
        c.recorder.event("binance", "BTC/USDT", "orderbook", "gap", "nonce jump")
        c.recorder.event("binance", None, None, "reconnect", "test")
        await c.writer.flush()
        c.recorder.trade("binance", "BTC/USDT", {"id": 9, "price": 100.0, "amount": 1.0, "side": "sell",
                                                  "timestamp": now // 1_000_000}, now)
        await c.writer.flush()
        fams = families(c.metrics.registry)
        size = c.writer.segment.size
        await c.writer.close(timeout=5)
        return c, fams, size

    c, fams, journal_bytes = asyncio.run(scenario())
    assert_declared(fams, [M.MESSAGES, M.ROWS_WRITTEN, M.BYTES_WRITTEN, M.STREAM_EVENT, M.ROWS_DROPPED,
                           M.QUEUE_FILL, M.LAST_MESSAGE_AGE, M.FLUSH_DURATION, M.LOOP_LAG, M.SEGMENT_ROTATIONS,
                           M.BUILD_INFO, M.WATCHDOG_HEALTHY, M.DISK_USED, M.DISK_FREE, M.DISK_SIZE])
    assert samples(fams, M.MESSAGES) == {("binance", "trades", "BTC/USDT"): 6.0,
                                         ("binance", "ticker", "ETH/USDT"): 2.0}
    assert samples(fams, M.ROWS_WRITTEN) == {("binance", "trades"): 6.0, ("binance", "ticker"): 2.0}
    assert samples(fams, M.STREAM_EVENT) == {("binance", "gap"): 1.0, ("binance", "reconnect"): 1.0}
    assert samples(fams, M.FLUSH_DURATION, "_count") == {(): 2.0}
    assert samples(fams, M.BYTES_WRITTEN) == {(): float(journal_bytes)}
    assert samples(fams, M.ROWS_DROPPED) == {("queue_full",): 0.0, ("disk_full",): 0.0}
    assert set(samples(fams, M.LAST_MESSAGE_AGE)) == {("binance", "trades", "BTC/USDT"),
                                                      ("binance", "ticker", "ETH/USDT")}
    assert samples(fams, M.WATCHDOG_HEALTHY) == {("collector",): 1.0}
    info = [s for s in fams[M.BUILD_INFO.name].samples][0]
    assert info.labels["version"] and len(info.labels["kernels"]) == 12
    assert "process_cpu_seconds" in fams


def test_stream_freshness_ignores_a_wall_clock_step(tmp_path, monkeypatch):
    """A stream's age (`fluxforge_last_message_age_seconds`) and the status line's `N/M up` are
    timed on the monotonic clock: stepping the wall clock an hour forward (every stream looked
    an hour old, none up) or back (a dead stream looked fresh for the hour) changes neither."""
    c = Collector(collector_config(tmp_path))
    now = time.time_ns()
    c.recorder.trade("binance", "BTC/USDT", {"id": 1, "price": 100.0, "amount": 1.0, "side": "buy",
                                              "timestamp": now // 1_000_000}, now)
    real_ns = time.time_ns
    for step_s in (0, 3600, -3600):
        monkeypatch.setattr(time, "time_ns", lambda: real_ns() + step_s * 10**9)
        ages = samples(families(c.metrics.registry), M.LAST_MESSAGE_AGE)
        assert ages[("binance", "trades", "BTC/USDT")] < 60, (step_s, ages)
        assert c.recorder.symbols_up("binance", ["BTC/USDT", "ETH/USDT"], 5.0) == 1, step_s
    monkeypatch.undo()
    real_mono = time.monotonic_ns
    monkeypatch.setattr(time, "monotonic_ns", lambda: real_mono() + 3600 * 10**9)  # an hour of silence
    assert samples(families(c.metrics.registry), M.LAST_MESSAGE_AGE)[("binance", "trades", "BTC/USDT")] >= 3600
    assert c.recorder.symbols_up("binance", ["BTC/USDT", "ETH/USDT"], 5.0) == 0


def test_metrics_disabled_changes_nothing(tmp_path):
    c = Collector(collector_config(tmp_path, enabled=False))
    assert c.metrics is None and c.metrics_endpoint is None and c.writer.metrics is None


def test_etl_exposition_after_segments(tmp_path):
    cfg = Config.model_validate({"data_dir": str(tmp_path / "data"), "host_id": "t",
                                 "etl": {"features": {"bar_durations": [1, 5]}}})
    write_segments(cfg.segments_dir / "ready", synthetic_market(seconds=20), 3, seconds=20)
    svc = EtlService(cfg, once=True, engine_class=LedgerEngine)
    before = families(svc.metrics.registry)
    assert samples(before, M.SEGMENTS)[("ready",)] == 3.0
    assert samples(before, M.OLDEST_READY_AGE)[()] > 0
    assert asyncio.run(svc.run()) == 0
    fams = families(svc.metrics.registry)
    assert_declared(fams, [M.SEGMENTS, M.OLDEST_READY_AGE, M.ETL_LAG, M.SEGMENT_DURATION, M.ETL_SEGMENTS,
                           M.LATE_DROPPED, M.FEATURE_ROWS, M.ETL_INPUT_ROWS, M.WATCHDOG_HEALTHY, M.BUILD_INFO])
    assert samples(fams, M.SEGMENTS)[("ready",)] == 0.0 and samples(fams, M.SEGMENTS)[("done",)] == 3.0
    assert samples(fams, M.OLDEST_READY_AGE)[()] == 0.0
    assert samples(fams, M.ETL_SEGMENTS) == {("done",): 3.0, ("failed",): 0.0}
    assert samples(fams, M.SEGMENT_DURATION, "_count") == {(): 3.0}
    assert samples(fams, M.FEATURE_ROWS)[("hf",)] > 0
    assert samples(fams, M.ETL_INPUT_ROWS)[("orderbook",)] > 0
    # the synthetic market is from the past: the lag is the age of its newest exchange time
    assert samples(fams, M.ETL_LAG)[()] > 60


def test_late_rows_per_symbol_reach_the_metrics(tmp_path):
    """Trades received 3 s after their exchange time, a 0.1 s reorder window: the ETL service drops
    some as late, and its per-symbol counter adds up to the total it checkpoints (the service reads
    the checkpoint again under its lock with a new runner: the metrics must follow it)."""
    from fluxforge.observe.status import etl_counters

    cfg = Config.model_validate({"data_dir": str(tmp_path / "data"), "host_id": "t",
                                 "etl": {"features": {"bar_durations": [1, 5]}, "reorder_window": 0.1}})
    market = synthetic_market(seconds=20, trades_per_s=5.0)
    t = market["trades"]
    late = pa.array(t.column("recv_ns").to_numpy() + 3_000_000_000)
    market["trades"] = t.set_column(t.schema.get_field_index("recv_ns"), "recv_ns", late).sort_by("recv_ns")
    write_segments(cfg.segments_dir / "ready", market, 2, seconds=20)
    svc = EtlService(cfg, once=True)
    assert asyncio.run(svc.run()) == 0
    total = etl_counters(cfg)["late_dropped"]
    late_by_symbol = samples(families(svc.metrics.registry), M.LATE_DROPPED)
    assert set(late_by_symbol) == {("binance", "BTC/USDT"), ("binance", "ETH/USDT")}
    assert sum(late_by_symbol.values()) == total > 0


def _tickers_with_issues():
    """BTC/USDT ticker rows, 100 ms apart over 14 s, with exactly 3 crossed, 4 missing a side, 2 redelivered,
    1 without exchange time and 1 late (received in the second segment, 13 s older than the first's end)."""
    import math
    from fluxforge.bronze import schemas as bronze
    from etl_support import T0_MS
    rows = []
    for i in range(140):
        ts = T0_MS + 100 * i
        bid, ask = 100.0 + 0.01 * i, 100.5 + 0.01 * i
        if i in (10, 20, 30):
            bid, ask = ask + 0.2, bid  # crossed
        if i in (40, 50, 60, 70):
            bid = math.nan if i % 20 else -1.0  # no bid, or a bid that is no price
        rows.append((ts, bid, ask))
        if i in (15, 45):
            rows.append((ts, bid, ask))  # redelivered: same time, same values
    rows.append((None, 100.0, 100.5))  # no exchange time
    rows.append((T0_MS + 1_000, 99.0, 99.5))  # late: received after the 14 s of the first segment
    recv = [(T0_MS + 100 * i) * 1_000_000 + 1_000_000 for i in range(len(rows) - 2)] \
        + [(T0_MS + 5_000) * 1_000_000, (T0_MS + 17_000) * 1_000_000]
    n = len(rows)
    return pa.table({
        "exchange": ["binance"] * n, "symbol": ["BTC/USDT"] * n, "timestamp": [r[0] for r in rows],
        "recv_ns": recv, "bid": pa.array([r[1] for r in rows], pa.float64(), from_pandas=True),
        "bid_size": [1.0] * n, "ask": [r[2] for r in rows], "ask_size": [2.0] * n, "last": [100.2] * n,
        "open": [None] * n, "high": [None] * n, "low": [None] * n, "base_volume": [10.0] * n,
        "quote_volume": [1000.0] * n, "vwap": [100.1] * n, "percentage": [None] * n,
    }, schema=bronze.TICKER).sort_by("recv_ns")


def test_ticker_counts_reach_the_segment_log_status_and_metrics(tmp_path):
    """Late, redelivered, untimed, crossed and one-sided tickers: the exact counts in each segment's
    `segment_done` event, in `fluxforge status`'s running totals and in the ETL's metrics."""
    from structlog.testing import capture_logs

    from fluxforge.observe.status import etl_counters
    from fluxforge.observe.status_text import ticker_issues_line

    cfg = Config.model_validate({"data_dir": str(tmp_path / "data"), "host_id": "t",
                                 "etl": {"features": {"bar_durations": [1, 5]}}})
    market = dict(synthetic_market(symbols=("BTC/USDT",), seconds=20), ticker=_tickers_with_issues())
    write_segments(cfg.segments_dir / "ready", market, 2, seconds=20)  # cut at 15 s of receive time
    svc = EtlService(cfg, once=True, engine_class=LedgerEngine)
    with capture_logs() as logs:
        assert asyncio.run(svc.run()) == 0
    done = [e for e in logs if e["event"] == "segment_done"]
    got = [{k[len("tickers_"):]: e[k] for k in e if k.startswith("tickers_")} for e in done]
    assert got == [{"late": 0, "duplicate": 2, "untimed": 1, "crossed": 3, "missing_side": 4},
                   {"late": 1, "duplicate": 0, "untimed": 0, "crossed": 0, "missing_side": 0}]
    counters = etl_counters(cfg)
    assert {k: counters[f"tickers_{k}"] for k in got[0]} == \
        {"late": 1, "duplicate": 2, "untimed": 1, "crossed": 3, "missing_side": 4}
    assert ticker_issues_line(counters) == \
        "1 late, 2 duplicate, 1 untimed dropped; 3 crossed, 4 missing a side kept without a mid"
    fams = families(svc.metrics.registry)
    assert_declared(fams, [M.TICKER_ROWS_FLAGGED])
    assert samples(fams, M.TICKER_ROWS_FLAGGED) == {
        ("binance", "BTC/USDT", "late"): 1.0, ("binance", "BTC/USDT", "duplicate"): 2.0,
        ("binance", "BTC/USDT", "untimed"): 1.0, ("binance", "BTC/USDT", "crossed"): 3.0,
        ("binance", "BTC/USDT", "missing_side"): 4.0}


def test_endpoint_serves_and_survives_a_busy_port(tmp_path):
    cfg = collector_config(tmp_path)
    c = Collector(cfg)
    ep = MetricsEndpoint(c.metrics.registry, "127.0.0.1", 0, "collector")
    assert ep.try_start()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{ep.bound_port}/metrics", timeout=5).read().decode()
        names = {f.name for f in text_string_to_metric_families(body)}
        assert {M.MESSAGES.name, M.QUEUE_FILL.name, M.BUILD_INFO.name} <= names
        busy = MetricsEndpoint(c.metrics.registry, "127.0.0.1", ep.bound_port, "collector")
        assert busy.try_start() is False  # logged and retried by serve(); never raises
    finally:
        ep.stop()
    with socket.socket() as s:  # the port is free again after stop()
        s.bind(("127.0.0.1", ep.port or 0))


def read_textfile(path) -> dict:
    return {f.name: f for f in text_string_to_metric_families(path.read_text())}


def test_job_textfile_written_atomically_and_keeps_last_success(tmp_path):
    cfg = collector_config(tmp_path)
    cfg.metrics.textfile_dir.mkdir()
    with job_metrics(cfg, "compact") as job:
        job.set(M.COMPACT_FILES, 7)
    path = textfile_path(cfg.metrics.textfile_dir, "compact")
    fams = read_textfile(path)
    assert_declared(fams, [M.JOB_LAST_RUN, M.JOB_LAST_SUCCESS, M.JOB_DURATION, M.JOB_OUTCOME, M.COMPACT_FILES])
    assert samples(fams, M.JOB_OUTCOME) == {("compact", "success"): 1.0, ("compact", "failure"): 0.0,
                                            ("compact", "skipped"): 0.0}
    first_success = samples(fams, M.JOB_LAST_SUCCESS)[("compact",)]
    assert samples(fams, M.COMPACT_FILES) == {(): 7.0}

    with pytest.raises(RuntimeError):
        with job_metrics(cfg, "compact"):
            raise RuntimeError("boom")
    fams = read_textfile(path)
    assert samples(fams, M.JOB_OUTCOME)[("compact", "failure")] == 1.0
    assert samples(fams, M.JOB_LAST_SUCCESS)[("compact",)] == first_success
    assert samples(fams, M.JOB_LAST_RUN)[("compact",)] >= first_success
    assert [p.name for p in cfg.metrics.textfile_dir.iterdir()] == ["fluxforge_compact.prom"]  # no temp left
    assert path.stat().st_mode & 0o777 == 0o644  # readable by node_exporter's user


def test_job_textfile_unwritable_dir_never_fails_the_job(tmp_path):
    cfg = collector_config(tmp_path)  # textfile_dir does not exist
    with job_metrics(cfg, "sync") as job:
        job.set(M.SYNC_UPLOADED_FILES, 1)
    assert not cfg.metrics.textfile_dir.exists()


def test_every_definition_follows_the_conventions():
    names = [d.name for d in M.ALL]
    assert len(names) == len(set(names))
    for d in M.ALL:
        assert d.name.startswith("fluxforge_"), d.name
        assert not d.name.endswith("_total"), d.name  # prometheus_client adds it to counters
        assert set(d.labels) <= {"exchange", "channel", "symbol", "state", "event", "reason", "tree", "task",
                                 "outcome", "kind", "service", "version", "kernels", "quantile"}, d.name
        if d.kind == M.HISTOGRAM or "seconds" in d.name:
            assert d.name.endswith(("_seconds", "_timestamp_seconds")), d.name
