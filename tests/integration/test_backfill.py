"""`fluxforge backfill` on a real Dask LocalCluster (2 worker processes) against moto's S3 server.

Every case is compared with a per-host `fluxforge replay` over the same segments
and options, file for file and byte for byte (with --start/--end: the replay's
files with the rows outside the range removed, compared by table content since
the Parquet files differ).  The fleet: two synthetic hosts collecting the same
two symbols (one with an exchange-wide reconnect) and one host made of the real
Binance captures (skipped cleanly without ../shared).
"""
from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3harness import Fault, FaultProxy, MotoServer, moto  # noqa: E402,F401
from syncdata import fresh_logging, tree_digest  # noqa: E402,F401
from fleet_bronze import write_capture_host, write_fleet  # noqa: E402
from backfill_support import (OPTIONS, download_prefix, features, read, replay_per_host, rows_in_range,  # noqa: E402
                              upload_bronze, write_config)
from etl_support import tables_equal  # noqa: E402

from fluxforge.cli import main  # noqa: E402

distributed = pytest.importorskip("distributed")
_ids = itertools.count()
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance-spot"


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster of 2 worker processes for the whole module (it costs seconds to start).

    Like workers on other machines, they hold their own S3 credentials (boto3's chain,
    here the environment): `--address` never ships the coordinator's keys to a cluster."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as c:
            yield c
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    hosts = write_fleet(root / "bronze", segments=3, seconds=40.0)
    if SHARED.is_dir():
        hosts["cap01"] = write_capture_host(root / "bronze", SHARED, rows=3000)
    return root, hosts


@pytest.fixture(scope="module")
def reference(fleet):
    root, hosts = fleet
    return replay_per_host(hosts, root / "replay")


@pytest.fixture(scope="module")
def s3_fleet(moto, fleet):
    _root, hosts = fleet
    moto.client().create_bucket(Bucket="bronze")
    upload_bronze(moto.client(), "bronze", "fleet", [s for segs in hosts.values() for s in segs])
    return "s3://bronze/fleet"


def host_dirs(root: Path, hosts: dict) -> list[str]:
    return [str(root / "bronze" / h) for h in sorted(hosts)]


def new_bucket(moto) -> str:
    name = f"features-{next(_ids)}"
    moto.client().create_bucket(Bucket=name)
    return name


def test_dask_s3_to_s3_equals_per_host_replay(tmp_path, moto, cluster, fleet, reference, s3_fleet, capsys):
    cfg = write_config(tmp_path / "c.yaml", moto.url)
    bucket = new_bucket(moto)
    rc = main(["backfill", s3_fleet, "--out", f"s3://{bucket}/v1", "-c", str(cfg), "--engine", "dask",
               "--address", cluster.scheduler_address, "--cache", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert rc == 0, out
    got = download_prefix(moto.client(), bucket, "v1", tmp_path / "got")
    want = features(reference)
    assert want and any("BTC-USDT" in k for k in want) and any("ETH-USDT" in k for k in want)
    assert features(got) == want
    hosts = len(fleet[1])
    assert len(list((got / "_done").rglob("*.json"))) == 2 * hosts
    assert (got / "_backfill.json").is_file() and f"{2 * hosts} of {2 * hosts} units" in out


def test_local_engine_filters_equal_filtered_replay(tmp_path, fleet, capsys):
    """--host/--symbol globs and --start/--end: the first segments of pi01/pi02 end before --start (the
    collector rotated at 16.7 s), so the replay they must equal is over segments 2 and 3, rows in range."""
    root, hosts = fleet
    cfg = write_config(tmp_path / "c.yaml")
    rc = main(["backfill", *host_dirs(root, hosts), "--out", str(tmp_path / "out"), "-c", str(cfg), "--workers", "2",
               "--host", "pi0*", "--symbol", "BTC/*", "--start", "2024-08-08T00:00:20", "--end", "2024-08-08T00:00:30Z"])
    assert rc == 0, capsys.readouterr()
    reference = replay_per_host({h: hosts[h][1:] for h in ("pi01", "pi02")}, tmp_path / "replay")
    got = features(tmp_path / "out")
    start_ms, end_ms = 1_723_075_220_000, 1_723_075_230_000
    expected = {}
    for rel in features(reference):
        rows = rows_in_range(read(reference / rel), start_ms, end_ms)
        if "BTC-USDT" in rel and rows.num_rows:
            expected[rel] = rows
    assert expected and set(got) == set(expected)
    for rel, rows in expected.items():
        assert tables_equal(read(tmp_path / "out" / rel).replace_schema_metadata(None),
                            rows.replace_schema_metadata(None)), rel


def test_killed_worker_mid_unit_then_rerun_skips_done_units(tmp_path, cluster, fleet, reference, capsys):
    root, hosts = fleet
    cfg = write_config(tmp_path / "c.yaml")
    out = tmp_path / "out"
    args = ["backfill", *host_dirs(root, hosts), "--out", str(out), "-c", str(cfg), "--engine", "dask",
            "--address", cluster.scheduler_address]
    rcs = []
    runner = threading.Thread(target=lambda: rcs.append(main(args)))
    watcher = distributed.Client(cluster.scheduler_address)
    killed = None
    try:
        runner.start()
        deadline = time.monotonic() + 120
        while killed is None and runner.is_alive() and time.monotonic() < deadline:
            busy = {w: keys for w, keys in watcher.processing().items() if any("run_task" in str(k) for k in keys)}
            started = out.is_dir() and any(out.glob("hf/**/part-*.parquet"))
            if busy and started:
                addr = next(iter(busy))
                killed = watcher.run(os.getpid, workers=[addr])[addr]
                os.kill(killed, signal.SIGKILL)  # a worker process dies mid-unit; the scheduler reschedules
            time.sleep(0.005)
        runner.join(timeout=300)
    finally:
        watcher.close()
    assert killed is not None, "no unit was seen running"
    assert rcs == [0], capsys.readouterr()
    assert features(out) == features(reference)
    marks = {p: p.stat().st_mtime_ns for p in out.rglob("part-*.parquet")}
    capsys.readouterr()
    assert main(args) == 0
    assert "0 of " in capsys.readouterr().out  # every unit already done: nothing recomputed
    assert {p: p.stat().st_mtime_ns for p in out.rglob("part-*.parquet")} == marks


def test_s3_faults_503_and_resets(tmp_path, moto, cluster, fleet, reference, s3_fleet, capsys):
    proxy = FaultProxy(moto.port)
    try:
        proxy.add(Fault(lambda m, p: m == "GET" and p.endswith("/orderbook.parquet"), "status", times=3))
        proxy.add(Fault(lambda m, p: m == "GET" and p.endswith("/trades.parquet"), "reset", times=2))
        proxy.add(Fault(lambda m, p: m == "PUT" and "/part-" in p, "reset", times=2))
        proxy.add(Fault(lambda m, p: m == "PUT" and "/part-" in p, "status", times=2))
        cfg = write_config(tmp_path / "c.yaml", proxy.url)
        bucket = new_bucket(moto)
        rc = main(["backfill", s3_fleet, "--out", f"s3://{bucket}/v1", "-c", str(cfg), "--engine", "dask",
                   "--address", cluster.scheduler_address, "--cache", str(tmp_path / "cache")])
        assert rc == 0, capsys.readouterr()
        assert all(f.hits == f.times for f in proxy.faults), [(f.action, f.hits) for f in proxy.faults]
    finally:
        proxy.close()
    got = download_prefix(moto.client(), bucket, "v1", tmp_path / "got")
    assert features(got) == features(reference)


def test_incomplete_segment_in_s3_is_skipped_with_reason(tmp_path, moto, fleet, capsys):
    _root, hosts = fleet
    bucket = new_bucket(moto)
    segs = hosts["pi02"]
    upload_bronze(moto.client(), bucket, "fleet", segs)
    last = segs[-1].name
    key = next(o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket)["Contents"]
               if last in o["Key"] and o["Key"].endswith("manifest.json"))
    moto.client().delete_object(Bucket=bucket, Key=key)  # as if sync was killed before the manifest
    first = segs[0].name
    lost = next(o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket)["Contents"]
                if first in o["Key"] and o["Key"].endswith("trades.parquet"))
    moto.client().delete_object(Bucket=bucket, Key=lost)  # a file of a complete segment lost from the bucket
    cfg = write_config(tmp_path / "c.yaml", moto.url)
    rc = main(["backfill", f"s3://{bucket}/fleet", "--out", str(tmp_path / "out"), "-c", str(cfg),
               "--workers", "1", "--cache", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"skipped {last}: incomplete in S3" in out
    assert f"skipped {first}: trades.parquet: listed in manifest.json but missing in S3" in out
    want = features(replay_per_host({"pi02": segs[1:-1]}, tmp_path / "replay"))  # replay skips both too
    assert features(tmp_path / "out") == want


@pytest.mark.parametrize("case", ["missing bucket", "unreachable", "bad credentials"])
def test_s3_errors_are_one_clear_line_and_nothing_written(tmp_path, moto, s3_fleet, case, capsys):
    out = tmp_path / "out"
    if case == "missing bucket":
        cfg, src, message = write_config(tmp_path / "c.yaml", moto.url), "s3://no-such-bucket/x", "does not exist"
    elif case == "unreachable":
        cfg = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", max_attempts=1, connect_timeout=1)
        src, message = s3_fleet, "cannot reach S3"
    else:
        with MotoServer(auth_after=0) as auth:
            cfg = write_config(tmp_path / "c.yaml", auth.url, key="AKIAWRONGWRONGWRONG1")
            rc = main(["backfill", "s3://bronze/fleet", "--out", str(out), "-c", str(cfg)])
            err = capsys.readouterr().err
        assert rc == 1 and "rejected the access key" in err and "Traceback" not in err, err
        assert not out.exists()
        return
    rc = main(["backfill", src, "--out", str(out), "-c", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_no_matching_segments_is_a_clear_error(tmp_path, fleet, capsys):
    root, hosts = fleet
    cfg = write_config(tmp_path / "c.yaml")
    assert main(["backfill", *host_dirs(root, hosts), "--out", str(tmp_path / "out"), "-c", str(cfg),
                 "--host", "nobody*"]) == 2
    assert "no bronze segments" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_other_options_into_the_same_dest_are_refused(tmp_path, fleet, capsys):
    root, hosts = fleet
    cfg = write_config(tmp_path / "c.yaml")
    out = tmp_path / "out"
    src = str(root / "bronze" / "pi02")
    assert main(["backfill", src, "--out", str(out), "-c", str(cfg), "--workers", "1"]) == 0
    variant = tmp_path / "variant.yaml"
    variant.write_text("etl:\n  features:\n    hf_emit_interval: 5.0\n")
    capsys.readouterr()
    assert main(["backfill", src, "--out", str(out), "-c", str(cfg), "--features", str(variant)]) == 1
    assert "other options" in capsys.readouterr().err
    assert main(["backfill", src, "--out", str(tmp_path / "v5"), "-c", str(cfg), "--features", str(variant),
                 "--workers", "1"]) == 0
    import json
    meta = json.loads((tmp_path / "v5" / "_backfill.json").read_text())
    assert meta["options"]["hf_emit_interval"] == 5.0 and meta["complete"] and len(meta["units_done"]) == 2


def products(root: Path) -> dict[str, str]:
    """{path: sha256} of every feature tree (hf/, bars/, trade_bars/, dollar_bars/, trades/, ticker/, ...)."""
    return {k: v for k, v in tree_digest(root).items() if not k.startswith("_")}


def test_trade_options_and_max_gap_of_the_features_file_are_honoured(tmp_path, fleet, capsys):
    """--features FILE with etl.max_gap_seconds, etl.trades (per-trade rows, horizons, bars) and a symbol
    override: every tree equals a replay with the same options (the ETL service's computation) and
    differs from the defaults -- hf too, which only max_gap_seconds changes."""
    from fluxforge.config import TradeOptions
    from fluxforge.etl.replay import replay

    root, hosts = fleet
    cfg = write_config(tmp_path / "c.yaml")
    variant = tmp_path / "variant.yaml"
    variant.write_text("etl:\n  max_gap_seconds: 0.4\n"
                       "  trades: {per_trade: true, horizons: [1, 7], bar_durations: [1, 5]}\n"
                       "  symbol_overrides: {'binance:ETH/USDT': {dollar_bar_size: 2000.0}}\n")
    out = tmp_path / "out"
    assert main(["backfill", str(root / "bronze" / "pi02"), "--out", str(out), "-c", str(cfg),
                 "--features", str(variant), "--workers", "1"]) == 0, capsys.readouterr()
    trades = TradeOptions(per_trade=True, horizons=[1, 7], bar_durations=[1, 5])
    overrides = {"binance:ETH/USDT": {"dollar_bar_size": 2000.0}}
    same = replay(hosts["pi02"], tmp_path / "same", OPTIONS, 65536, trade_options=trades,
                  symbol_overrides=overrides, max_gap_ms=400)
    assert not same.skipped
    replay(hosts["pi02"], tmp_path / "defaults", OPTIONS, 65536)
    got, want, default = products(out), products(tmp_path / "same"), products(tmp_path / "defaults")
    assert got == want
    assert any(k.startswith("trades/") for k in got) and any("dollar_bars/exchange=binance/symbol=ETH" in k for k in got)
    hf = {k: v for k, v in got.items() if k.startswith("hf/")}
    assert hf and hf != {k: v for k, v in default.items() if k.startswith("hf/")}
    assert "vwap_7s" in read(out / next(k for k in got if k.startswith("trades/"))).column_names
    import yaml
    configured = yaml.safe_load(cfg.read_text())  # the same options in the config: `fluxforge replay` honours them
    configured["etl"].update(yaml.safe_load(variant.read_text())["etl"])
    (tmp_path / "c2.yaml").write_text(yaml.safe_dump(configured))
    assert main(["replay", str(root / "bronze" / "pi02"), "--out", str(tmp_path / "cli"),
                 "-c", str(tmp_path / "c2.yaml")]) == 0
    assert products(tmp_path / "cli") == got
    import json
    meta = json.loads((out / "_backfill.json").read_text())
    assert (meta["max_gap_seconds"], meta["trades"]["horizons"], meta["symbol_overrides"]) == (0.4, [1, 7], overrides)
    variant.write_text("etl:\n  max_gap_seconds: 0.5\n")  # another variant into the same DEST: refused
    assert main(["backfill", str(root / "bronze" / "pi02"), "--out", str(out), "-c", str(cfg),
                 "--features", str(variant), "--workers", "1"]) == 1
    assert "other options" in capsys.readouterr().err
    variant.write_text("etl:\n  poll_interval: 1\n")
    assert main(["backfill", str(root / "bronze" / "pi02"), "--out", str(tmp_path / "o2"), "-c", str(cfg),
                 "--features", str(variant)]) == 78
    assert "etl.poll_interval: not an output option" in capsys.readouterr().err


def test_killed_run_resumes_with_the_unfinished_units(tmp_path, fleet, reference):
    """SIGKILL of the whole local run (coordinator and pool) after its first unit: the rerun
    skips the finished units, redoes the others from the start, and equals the replay."""
    import subprocess

    root, hosts = fleet
    cfg = write_config(tmp_path / "c.yaml")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fluxforge", "backfill", *host_dirs(root, hosts), "--out", str(out), "-c", str(cfg),
           "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and not list(out.glob("_done/**/*.json")) and time.monotonic() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    done_before = len(list(out.glob("_done/**/*.json")))
    assert 1 <= done_before < 2 * len(hosts)
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({done_before} already done)" in rerun.stdout
    assert features(out) == features(reference)
