"""`fluxforge demo --seconds 10` end to end: loopback exchange, collector and ETL processes, summary, files, PNG.

One demo run (about 15-30 s on a busy 2-core machine) is shared by the checks
below; each check looks at a different product of it.
"""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from fluxforge.observe.report import PIXEL_SIZE
from fluxforge.service_child import FLUXFORGE

SYMBOLS = ("BTC/USDT", "ETH/USDT")


def fluxforge(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLUXFORGE_CONFIG": "/nonexistent/config.yaml"}
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run([*FLUXFORGE, *argv], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo") / "run"
    proc = fluxforge("demo", "--seconds", "10", "--symbols", "2", "--dir", str(directory))
    assert proc.returncode == 0, f"demo failed:\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return directory, proc


def test_summary_reports_rows_per_symbol_features_and_paths(demo):
    directory, proc = demo
    out = proc.stdout
    for sym in SYMBOLS:
        m = re.search(rf"^  {re.escape(sym)}\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)$", out, re.M)
        assert m, f"no summary row for {sym}:\n{out}"
        books, trades, tickers, _events, hf = (int(g.replace(",", "")) for g in m.groups())
        # the sim sends 10 book updates/s per symbol: 10 s of collection must land most of them
        assert books >= 50 and trades > 0 and tickers > 0 and hf > 0
    assert re.search(r"^  segments  \d+ done$", out, re.M), out       # all transformed, none failed/left
    assert re.search(r"^  features  [\d,]+ hf rows x \d+ columns; bars .*1s.*; \d+ Parquet files$", out, re.M)
    assert f"  features  {directory / 'data' / 'features'}" in out
    assert f"  chart     {directory / 'chart.png'}" in out
    assert "import duckdb; duckdb.sql(" in out and "import pyarrow.dataset" in out
    # not a TTY: no progress line drawn, and nothing alarming on stderr
    assert "\r" not in out and "\x1b[" not in out + proc.stderr
    assert "Traceback" not in proc.stderr


def test_feature_files_and_the_printed_duckdb_query(demo):
    import duckdb

    directory, proc = demo
    features = directory / "data" / "features"
    for sym in SYMBOLS:
        part = sym.replace("/", "-")
        hf = list((features / "hf" / "exchange=binance" / f"symbol={part}").glob("date=*/part-seg-demo-*.parquet"))
        bars = list((features / "bars" / "interval=1s" / "exchange=binance" / f"symbol={part}").glob("date=*/*.parquet"))
        assert hf and bars
        table = pq.read_table(hf[0])
        assert {"timestamp", "mid_price", "microprice", "spread"} <= set(table.column_names)
        assert "symbol" not in table.column_names  # partition columns are not repeated inside files
    sql = re.search(r'duckdb\.sql\(\\"(.*)\\"\)\.show\(\)"$', proc.stdout, re.M)[1]
    rows = duckdb.sql(f"SELECT symbol, bars FROM ({sql})").fetchall()
    assert [r[0] for r in rows] == [s.replace("/", "-") for s in SYMBOLS]
    assert all(r[1] >= 5 for r in rows)  # >= 5 one-second bars per symbol out of 10 s
    # the trade-bar query: one OHLCV line per symbol, equal to the Parquet rows read with pyarrow
    sql = re.findall(r'duckdb\.sql\(\\"(.*)\\"\)\.show\(\)"$', proc.stdout, re.M)[1]
    assert "trade_bars/interval=1s" in sql
    got = {r[0]: r[1:] for r in duckdb.sql(sql).fetchall()}
    assert list(got) == [s.replace("/", "-") for s in SYMBOLS]
    for sym, (bars, open_, high, low, close, volume) in got.items():
        t = ds.dataset(features / "trade_bars" / "interval=1s" / "exchange=binance" / f"symbol={sym}",
                       partitioning=ds.partitioning(flavor="hive")).to_table().sort_by("timestamp")
        assert bars == t.num_rows > 0
        assert (open_, close) == (t["open"][0].as_py(), t["close"][-1].as_py())
        assert (high, low) == (max(t["high"].to_pylist()), min(t["low"].to_pylist()))
        assert volume == pytest.approx(sum(t["volume"].to_pylist()), rel=1e-12)


def test_every_printed_command_works_as_printed(demo, tmp_path):
    """What a new user does after `make demo`: paste each line under "look at them:" into a shell
    (no venv activated, only what the project installed) -- each must run and show data."""
    _directory, proc = demo
    commands = proc.stdout.split("look at them:\n", 1)[1].strip().splitlines()
    assert len(commands) == 6, commands
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "NOTIFY_SOCKET")}
    env["PATH"] = "/usr/bin:/bin"
    outputs = []
    for line in commands:
        r = subprocess.run(["bash", "-c", line.strip()], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode in (0, 1), f"{line}\nrc={r.returncode}\n{r.stdout}\n{r.stderr}"  # status: 1 = warnings
        outputs.append(r.stdout)
    status, _report, inspect, duck, trade_duck, arrow = outputs
    assert "segments" in status and "state     done" in inspect
    assert list(tmp_path.glob("*.png"))                                       # the report was written
    assert all(s.replace("/", "-") in duck for s in SYMBOLS)                  # duckdb's table of bars
    assert all(s.replace("/", "-") in trade_duck for s in SYMBOLS) and "volume" in trade_duck  # OHLCV
    rows = int(arrow.split(" rows", 1)[0])
    assert rows > 0 and "mid_price" in arrow and "symbol" in arrow            # hive columns are there


def test_chart_is_a_real_png_of_the_expected_size(demo):
    import matplotlib.image

    directory, _ = demo
    png = directory / "chart.png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == PIXEL_SIZE
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == (PIXEL_SIZE[1], PIXEL_SIZE[0])
    assert pixels[..., :3].std() > 0.05  # lines and text, not a blank canvas


def test_demo_directory_is_an_appliance_data_dir(demo):
    directory, _ = demo
    proc = fluxforge("status", "--json", "--no-units", "--config", str(directory / "config.yaml"))
    facts = json.loads(proc.stdout)
    assert facts["segments"]["failed"]["count"] == 0 and facts["segments"]["done"]["count"] >= 2
    assert facts["etl"]["waiting"] == 0
    streams = {s["symbol"]: s for s in facts["streams"] if s["configured"]}
    assert set(streams) == set(SYMBOLS) and all(s["messages_last_hour"] > 0 for s in streams.values())
    assert not {"failed_segments", "etl_lag", "stale_active", "unreadable_files"} & {w["code"] for w in facts["warnings"]}
    logs = directory / "logs"
    assert "collector_stopped" in (logs / "collector.log").read_text()
    assert "etl_stopped" in (logs / "etl.log").read_text()


def test_the_demo_subscriber_got_every_landed_row_live(demo):
    """The demo subscribes to its own ETL (live features on) and says what it got: as many rows as
    every landed part holds, counted here from the Parquet footers, each equal to its Parquet row."""
    directory, proc = demo
    m = re.search(r"^  live      ([\d,]+) rows to a subscriber as they became final.*; "
                  r"hf rows p50 ([\d.]+) s, p99 ([\d.]+) s after the exchange event$", proc.stdout, re.M)
    assert m, proc.stdout
    received, p50, p99 = int(m[1].replace(",", "")), float(m[2]), float(m[3])
    m = re.search(r"^            each equal to its Parquet row: ([\d,]+) rows landed in (\d+) product/symbol "
                  r"streams, in the same order, every column$", proc.stdout, re.M)
    assert m, proc.stdout
    parts = sorted((directory / "data" / "features").rglob("part-*.parquet"))
    landed = sum(pq.read_metadata(p).num_rows for p in parts)
    streams = {p.parent.parent for p in parts}  # .../<product>/exchange=/symbol=/date=/part
    assert received == int(m[1].replace(",", "")) == landed > 0
    assert int(m[2]) == len(streams) >= 3 * len(SYMBOLS)  # hf, bars of several intervals, trade products
    # the loopback stamps its events with this machine's clock; a row is final only after the
    # demo's reorder window (0.5 s) has passed it on both streams
    assert 0.5 <= p50 <= p99 < 60


def test_the_demo_live_check_finds_a_changed_missing_or_retyped_row(demo):
    """The check behind that line fails when the live rows are not the landed ones."""
    from live_support import landed

    from fluxforge.demo.live_watch import LiveWatch

    directory, _ = demo
    truth = {k: t.to_pylist() for k, t in landed(directory / "data" / "features").items()}
    watch = LiveWatch(directory / "unused.sock")
    watch.rows.update({k: [dict(r) for r in rows] for k, rows in truth.items()})
    check = watch.check(directory / "data" / "features")
    assert check.differences == [] and check.received == check.landed == sum(map(len, truth.values()))

    hf = next(k for k in truth if k[0] == "hf")
    watch.rows[hf][1]["mid_price"] = -12345.678
    bars = next(k for k in truth if k[0].startswith("bars/"))
    watch.rows[bars][0]["count"] = float(watch.rows[bars][0]["count"])  # 3 == 3.0, but not the same type
    trades = next(k for k in truth if k[0].startswith("trade_bars/"))
    del watch.rows[trades][-1]
    dropped = next(k for k in truth if k not in (hf, bars, trades))
    del watch.rows[dropped]
    got = watch.check(directory / "data" / "features").differences
    assert got == sorted([f"{' '.join(hf)}: 1 of {len(truth[hf])} row(s) differ, the first at row 1",
                          f"{' '.join(bars)}: 1 of {len(truth[bars])} row(s) differ, the first at row 0",
                          f"{' '.join(trades)}: {len(truth[trades]) - 1} row(s) received live, "
                          f"{len(truth[trades])} landed",
                          f"{' '.join(dropped)}: 0 row(s) received live, {len(truth[dropped])} landed"]), got


def test_busy_directory_is_refused_in_one_line(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    proc = fluxforge("demo", "--seconds", "5", "--dir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"fluxforge: demo: {tmp_path} is not empty and was not made by "
                                   f"`fluxforge demo`; choose another --dir")
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("argv, needle", [
    (["--seconds", "0"], "must be between 3 and 3600 seconds"),
    (["--symbols", "99"], "must be between 1 and 10"),
    (["--seconds", "ten"], "'ten' is not a number of seconds"),
])
def test_bad_arguments_are_usage_errors(argv, needle):
    proc = fluxforge("demo", *argv)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_a_service_that_dies_is_reported_in_one_line(tmp_path):
    """What the demo shows when a child fails: its exit status and the last line of its log."""
    import asyncio

    from fluxforge.service_child import ServiceChild, ServiceFailed

    bad = tmp_path / "config.yaml"
    bad.write_text("collector:\n  flush_interval: -1\n")
    child = ServiceChild("collector", ["collect", "--config", str(bad)], tmp_path / "logs" / "collector.log")
    child.start()
    try:
        with pytest.raises(ServiceFailed) as err:
            asyncio.run(child.wait_ready(timeout=120))
    finally:
        child.kill()
    message = str(err.value)
    assert message.startswith("collector exited with status 78: fluxforge: config error:")
    assert "collector.flush_interval" in message and "\n" not in message


def test_sigterm_stops_the_children_cleanly(tmp_path):
    import signal
    import time

    directory = tmp_path / "run"
    env = {**os.environ, "FLUXFORGE_CONFIG": "/nonexistent/config.yaml"}
    proc = subprocess.Popen([*FLUXFORGE, "demo", "--seconds", "60", "--symbols", "1",
                             "--dir", str(directory)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        log = directory / "logs" / "collector.log"
        deadline = time.monotonic() + 120
        while not (log.exists() and "collector_ready" in log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "collector never became ready"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "interrupted; the collector and ETL were stopped" in err and "Traceback" not in err
    # the children got SIGTERM and shut down the way systemd would make them
    assert "collector_stopped" in log.read_text()
    assert "etl_stopped" in (directory / "logs" / "etl.log").read_text()


def test_live_line_redraws_in_place_only_on_a_tty():
    import io

    from fluxforge.demo.run import DemoProgress

    tty = io.StringIO()
    p = DemoProgress(30, stream=tty, enabled=True)
    p.phase, p.counts = "collecting", "messages 1,234 | segments 2 rotated, 1 transformed | features 9 files"
    p.set(12.4)
    p.close()
    line = "demo   12/30 s | messages 1,234 | segments 2 rotated, 1 transformed | features 9 files"
    out = tty.getvalue()
    assert out.endswith("\r\x1b[2K" + line + "\n") and out.count("\n") == 1  # one line, redrawn in place
    assert set(out.split("\r\x1b[2K")[1:]) == {line, line + "\n"}
    pipe = io.StringIO()
    p = DemoProgress(30, stream=pipe)  # a StringIO is not a TTY: nothing is drawn
    p.set(5)
    p.close()
    assert pipe.getvalue() == ""
