"""Boot test: the built .deb in a booted bookworm container, used as an operator would.

One container for the whole module, steps in order (each needs the previous):
install -> target up -> data flows from the host's loopback exchange to features ->
structured journal events -> watchdog kill and recovery -> timers and a sync run
to moto on the host -> reinstall / upgrade / remove / purge keep what they promise.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import buildroot
from container_probe import (
    LONG_RUNNING, ONESHOTS, TIMERS, assert_appliance_up, journal, running_with_status, unit_props, wait_for,
)

BUCKET = "fluxforge-boottest"
HOST_ID = "boottest"
DATA = "var/lib/fluxforge"


def appliance_config(loopback, moto_s3) -> dict:
    return {
        "data_dir": "/var/lib/fluxforge",
        "host_id": HOST_ID,
        "exchanges": [{"name": "binance", "ccxt": loopback.ccxt_config("binance"),
                       "symbols": ["BTC/USDT", "ETH/USDT"], "book_depth": 20}],
        # Short segments so the test sees several rotations within a minute.
        "collector": {"flush_interval": 0.5, "segment_max_seconds": 8},
        "etl": {"reorder_window": 1},
        "sync": {"enabled": True, "bucket": BUCKET, "endpoint_url": moto_s3.endpoint, "region": "us-east-1",
                 "addressing_style": "path",
                 # Secrets as systemd credentials (LoadCredential=), not in the file.
                 "aws_access_key_id": "${credential:fluxforge_s3_key_id}",
                 "aws_secret_access_key": "${credential:fluxforge_s3_secret}",
                 # timesyncd cannot run in a container (no CAP_SYS_TIME; its ConditionVirtualization
                 # skips it), so its "synchronized" flag never appears; the host's clock is used as is.
                 "require_time_sync": False},
    }


def install_deb(container, deb: Path, *extra: str) -> subprocess.CompletedProcess:
    target = container.root / "root" / deb.name
    if not target.exists():
        target.write_bytes(deb.read_bytes())
    return container.run(["apt-get", "install", "-y", "-q", "-o", "Dpkg::Options::=--force-confold",
                          *extra, f"/root/{deb.name}"], timeout=900)


@pytest.fixture(scope="module")
def appliance(deb_package, lintian_run, boot_root, loopback, moto_s3, log_dir):
    logs = log_dir / "boot"
    logs.mkdir()
    container = buildroot.BootedContainer(boot_root, prefix="ffboot", log_dir=logs)
    container.start()
    try:
        # As an operator provisioning a box: config and secrets first, then the package;
        # --force-confold keeps this config instead of the packaged example.
        etc = container.root / "etc" / "fluxforge"
        (etc / "credentials").mkdir(parents=True, mode=0o700)
        (etc / "config.yaml").write_text(yaml.safe_dump(appliance_config(loopback, moto_s3), sort_keys=False))
        for name, value in (("s3_key_id", "appliance-key"), ("s3_secret", "appliance-secret")):
            (etc / "credentials" / name).write_text(value)
            (etc / "credentials" / name).chmod(0o600)
        moto_s3.client().create_bucket(Bucket=BUCKET)
        container.install_log = install_deb(container, deb_package).stdout
        yield container
    finally:
        dump = container.run(["journalctl", "--no-pager", "-n", "2000"], check=False) if container.init_pid else None
        if dump is not None:
            (logs / "journal.txt").write_text(dump.stdout)
            print(f"container journal: {logs / 'journal.txt'}")
        container.stop()


def data_files(container, pattern: str) -> list[Path]:
    return sorted((container.root / DATA).glob(pattern))


def test_1_install_brings_up_target_and_services(appliance):
    statuses = assert_appliance_up(appliance)
    assert all(statuses.values())
    assert appliance.run(["getent", "passwd", "fluxforge"]).stdout.startswith("fluxforge:")
    # The oneshots are only ever started by their timers, never by apt.
    for unit in ONESHOTS:
        p = unit_props(appliance, unit, "ExecMainStartTimestampMonotonic", "ActiveState")
        assert p["ExecMainStartTimestampMonotonic"] in ("0", ""), f"{unit} ran during installation: {p}"
    # The config put in place before installing is the one in use (a conffile, kept).
    assert HOST_ID in (appliance.root / "etc/fluxforge/config.yaml").read_text()


def test_the_etl_runs_with_room_for_its_live_subscribers_descriptors(appliance):
    """The unit's LimitNOFILE=65536 reaches the running ETL (live/hub.py: 4 descriptors a subscriber
    place, 256 its own: room for the largest etl.live.max_subscribers), not systemd's soft 1,024.
    In the container no service may exceed its PID 1's hard limit (the host shell's, here)."""
    def open_files(pid) -> tuple[int, int]:
        limits = appliance.run(["cat", f"/proc/{pid}/limits"]).stdout
        return tuple(int(v) for v in next(x for x in limits.splitlines() if x.startswith("Max open files")).split()[3:5])
    pid = unit_props(appliance, "fluxforge-etl.service", "MainPID")["MainPID"]
    assert open_files(pid)[0] == min(65536, open_files(1)[1])


def test_units_verify_clean_and_score_safe(appliance):
    units = [f"/lib/systemd/system/{u}" for u in
             ("fluxforge.target", *LONG_RUNNING, *ONESHOTS, *TIMERS)]
    verify = appliance.run(["systemd-analyze", "verify", *units], check=False)
    assert verify.stderr == "" and verify.returncode == 0, verify.stderr
    for unit in (*LONG_RUNNING, *ONESHOTS):
        for mode in ("--offline=yes", "--offline=no"):
            out = appliance.run(["systemd-analyze", "security", mode, "--no-pager",
                                 unit if mode == "--offline=no" else f"/lib/systemd/system/{unit}"]).stdout
            exposure = float(out.strip().splitlines()[-1].split("level for")[1].split(":")[1].split()[0])
            assert exposure <= 2.0, f"{unit} ({mode}) exposure {exposure}:\n{out}"


def test_2_collector_writes_segments_and_etl_makes_features(appliance):
    wait_for(lambda: data_files(appliance, "segments/done/seg-*/manifest.json"), 180,
             "the ETL to move a segment to done/")
    hf = wait_for(lambda: data_files(appliance, "features/hf/exchange=*/symbol=*/date=*/part-*.parquet"), 60,
                  "hf feature files")
    bars = data_files(appliance, "features/bars/interval=*s/exchange=*/symbol=*/date=*/part-*.parquet")
    assert bars, "no bar files next to the hf features"
    assert {p.parent.parent.name for p in hf} >= {"symbol=BTC-USDT", "symbol=ETH-USDT"}
    assert not data_files(appliance, "segments/failed/*"), "the ETL failed a segment"
    # Files belong to the service user, readable by its group only (UMask=0027).
    st = hf[0].stat()
    assert st.st_mode & 0o007 == 0


def test_2b_the_services_run_with_their_units_thread_limits(appliance):
    """OPENBLAS_NUM_THREADS=1 and OMP_THREAD_LIMIT=8 reach the running services: on a 64-core VM
    numpy and Arrow would otherwise start more threads than TasksMax= allows (shown with the real
    `fluxforge compact` in a pids cgroup: tests/integration/test_service_threads.py)."""
    for unit in LONG_RUNNING:
        pid = unit_props(appliance, unit, "MainPID")["MainPID"]
        env = set(appliance.run(["cat", f"/proc/{pid}/environ"]).stdout.split("\0"))
        assert {"OPENBLAS_NUM_THREADS=1", "OMP_THREAD_LIMIT=8"} <= env, (unit, env)
        threads = len(appliance.run(["ls", f"/proc/{pid}/task"]).stdout.split())
        tasks_max = int(unit_props(appliance, unit, "TasksMax")["TasksMax"])
        assert threads <= tasks_max // 2, (unit, threads, tasks_max)


def test_3_journal_has_structured_segment_rotated_events(appliance):
    events = wait_for(lambda: journal(appliance, "EVENT=segment_rotated", unit="fluxforge-collector"), 60,
                      "segment_rotated events in the journal")
    e = events[-1]
    assert e["SYSLOG_IDENTIFIER"] == "fluxforge-collector"
    assert e["SEGMENT"].startswith(f"seg-{HOST_ID}-")
    assert int(e["ROWS"]) > 0
    # The CLI form from the docs works and prints the same events.
    out = appliance.run(["journalctl", "--no-pager", "-u", "fluxforge-collector", "EVENT=segment_rotated"]).stdout
    assert "segment_rotated" in out


def test_4_watchdog_kills_a_stopped_collector_and_it_recovers(appliance):
    unit = "fluxforge-collector.service"
    before = unit_props(appliance, unit, "MainPID", "NRestarts")
    old_pid = int(before["MainPID"])
    assert old_pid > 0
    appliance.run(["kill", "-STOP", str(old_pid)])

    def restarted():
        p = unit_props(appliance, unit, "MainPID", "NRestarts")
        return p if int(p["NRestarts"]) > int(before["NRestarts"]) and p["MainPID"] not in ("0", str(old_pid)) else None

    after = wait_for(restarted, 180, "systemd to kill the stopped collector and restart it", interval=2)
    failures = journal(appliance, "UNIT_RESULT=watchdog", unit="fluxforge-collector")
    assert failures, "no 'Failed with result watchdog' record for the collector"
    status = wait_for(lambda: running_with_status(appliance, unit), 180, "the restarted collector to be ready")
    assert status
    # The new process recovered the segment the killed one left in active/.
    recovered = wait_for(lambda: [e for e in journal(appliance, "EVENT=segment_recovered", unit="fluxforge-collector")
                                  if e.get("_PID") == after["MainPID"]], 60,
                         "segment_recovered from the restarted collector")
    seg = recovered[0]["SEGMENT"]
    manifest = wait_for(lambda: data_files(appliance, f"segments/*/{seg}/manifest.json"), 60, f"{seg} manifest")
    assert json.loads(manifest[0].read_text())["recovered"] is True


def test_4b_revive_starts_a_service_that_hit_its_start_limit_again(appliance):
    """A crash loop (here: the ETL's ExecStart failing at once, RestartSec=100ms) ends in `failed`
    ("Start request repeated too quickly"), where systemd 252 leaves a unit for good; once the cause is gone,
    fluxforge-revive.service (its timer's run) resets and starts it, and says so in the journal."""
    unit = "fluxforge-etl.service"
    dropin = appliance.root / "etc/systemd/system" / f"{unit}.d" / "99-test-crash-loop.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nExecStart=\nExecStart=/bin/false\nRestartSec=100ms\n")
    appliance.run(["systemctl", "stop", "fluxforge-revive.timer"])  # its run is started below, at a known moment
    try:
        appliance.run(["systemctl", "daemon-reload"])
        appliance.run(["systemctl", "restart", "--no-block", unit])
        # systemd 252 keeps the last run's Result (exit-code) when it refuses the next restart
        wait_for(lambda: [e for e in journal(appliance, unit=unit) if "repeated too quickly" in e.get("MESSAGE", "")],
                 120, f"{unit} to hit its start limit")
        gave_up = unit_props(appliance, unit, "ActiveState", "Result", "NRestarts")
        assert (gave_up["ActiveState"], gave_up["Result"]) == ("failed", "exit-code"), gave_up
        assert int(gave_up["NRestarts"]) >= 4, gave_up
    finally:
        dropin.unlink()
        appliance.run(["systemctl", "daemon-reload"])
    assert unit_props(appliance, unit, "ActiveState")["ActiveState"] == "failed"  # nothing else revives it
    appliance.run(["systemctl", "start", "fluxforge-revive.service"], timeout=120)
    assert unit_props(appliance, "fluxforge-revive.service", "Result")["Result"] == "success"
    assert wait_for(lambda: running_with_status(appliance, unit), 180, f"the revived {unit} ready")
    said = [e.get("MESSAGE", "") for e in journal(appliance, unit="fluxforge-revive")]
    assert any(f"{unit} failed (result: exit-code" in m and "started it again" in m for m in said), said
    appliance.run(["systemctl", "start", "fluxforge-revive.timer"])


def test_5_timers_listed_and_sync_uploads_to_moto(appliance, moto_s3):
    listed = appliance.run(["systemctl", "list-timers", "--all", "--no-pager"]).stdout
    for timer in TIMERS:
        assert timer in listed, listed
    appliance.run(["systemctl", "start", "fluxforge-sync.service"], timeout=600)
    p = unit_props(appliance, "fluxforge-sync.service", "Result", "ExecMainStatus")
    assert (p["Result"], p["ExecMainStatus"]) == ("success", "0"), p
    keys = moto_s3.keys(BUCKET)
    assert any(HOST_ID in k and k.endswith(".parquet") for k in keys), keys[:20]
    appliance.run(["systemctl", "start", "fluxforge-compact.service"], timeout=600)
    p = unit_props(appliance, "fluxforge-compact.service", "Result")
    assert p["Result"] == "success", p


def repack_with_version(deb: Path, version: str, work: Path) -> Path:
    """The same package under a higher version: a real dpkg upgrade through the maintainer scripts."""
    tree = work / "tree"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    control.write_text(re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(), flags=re.M))
    arch = re.search(r"^Architecture: (\S+)$", control.read_text(), re.M).group(1)
    out = work / f"fluxforge_{version}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", str(tree), str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(tree)
    return out


def test_7_reinstall_and_upgrade_keep_config_and_data(appliance, deb_package, tmp_path):
    config = appliance.root / "etc/fluxforge/config.yaml"
    config.write_text(config.read_text() + "# edited by the operator\n")
    marker = appliance.root / DATA / "operator-marker"
    marker.write_text("keep me")
    done_before = set(data_files(appliance, "segments/done/seg-*"))
    assert done_before

    install_deb(appliance, deb_package, "--reinstall")
    assert config.read_text().endswith("# edited by the operator\n")
    assert marker.exists() and done_before <= set(data_files(appliance, "segments/done/seg-*"))
    assert_appliance_up(appliance)

    old_pid = unit_props(appliance, "fluxforge-collector.service", "MainPID")["MainPID"]
    upgrade = repack_with_version(deb_package, "0.1.0+upgradetest1", tmp_path)
    install_deb(appliance, upgrade)
    version = appliance.run(["dpkg-query", "-W", "-f=${Version}", "fluxforge"]).stdout
    assert version == "0.1.0+upgradetest1"
    assert config.read_text().endswith("# edited by the operator\n")
    assert marker.exists() and done_before <= set(data_files(appliance, "segments/done/seg-*"))
    assert_appliance_up(appliance)
    assert unit_props(appliance, "fluxforge-collector.service", "MainPID")["MainPID"] != old_pid, \
        "the upgrade did not restart the collector onto the new code"


def test_8_remove_stops_everything_purge_keeps_data(appliance):
    appliance.run(["apt-get", "remove", "-y", "-q", "fluxforge"], timeout=600)
    for unit in ("fluxforge.target", *LONG_RUNNING, *ONESHOTS, *TIMERS):
        assert unit_props(appliance, unit, "ActiveState")["ActiveState"] in ("inactive", ""), unit
    assert appliance.run(["pgrep", "-u", "fluxforge"], check=False).returncode == 1, "fluxforge processes left"
    assert (appliance.root / "etc/fluxforge/config.yaml").exists(), "remove (not purge) keeps the config"

    appliance.run(["apt-get", "purge", "-y", "-q", "fluxforge"], timeout=600)
    assert not (appliance.root / "etc/fluxforge").exists(), "purge removes the configuration"
    assert appliance.run(["getent", "passwd", "fluxforge"], check=False).returncode == 2, "purge removes the user"
    assert data_files(appliance, "segments/done/seg-*"), "purge keeps /var/lib/fluxforge (documented)"
    assert not (appliance.root / "opt/fluxforge").exists()
