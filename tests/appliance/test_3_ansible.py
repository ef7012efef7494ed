"""Step 6: the Ansible playbook provisions a fresh container to the same running state.

Connection: real SSH.  The fresh container runs the stock Debian sshd (its own port
on 127.0.0.1, since containers share the host's network) with a throwaway key in
root's authorized_keys, exactly how a freshly flashed Pi or a new cloud VM is reached.
The inventory is built from inventories/pi.example's group variables, with only the
connection, package path and the loopback exchange added per host.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import buildroot
from conftest import REPO
from container_probe import assert_appliance_up, journal, running_with_status, unit_props, wait_for

ANSIBLE_DIR = REPO / "ansible"
HOST = "appliance01"
BUCKET = "fluxforge-ansibletest"


def venv_tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {path.parent}: `make test-appliance` installs the "
                    "`appliance` extra (ansible-core, ansible-lint)")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_sshd(root: Path, port: int, pubkey: str) -> None:
    """authorized_keys for root, sshd on 127.0.0.1:<port>, and ssh.service unmasked and enabled."""
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(pubkey)
    (ssh_dir / "authorized_keys").chmod(0o600)
    (root / "etc/ssh/sshd_config.d/fluxforge-test.conf").write_text(f"Port {port}\nListenAddress 127.0.0.1\n")
    mask = root / "etc/systemd/system/ssh.service"
    if mask.is_symlink():
        mask.unlink()
    wants = root / "etc/systemd/system/multi-user.target.wants/ssh.service"
    if not wants.is_symlink():
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to("/lib/systemd/system/ssh.service")


class Playbook:
    """ansible-playbook site.yml against the test inventory; returns the recap of our host."""

    def __init__(self, work: Path, inventory: Path, playbook: str = "site.yml"):
        self.work = work
        self.inventory = inventory
        self.playbook = playbook
        self.runs = 0
        self.env = {**os.environ,
                    "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
                    "ANSIBLE_HOST_KEY_CHECKING": "False",
                    "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
                    "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
                    "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_FORCE_COLOR": "0"}

    def __call__(self, *extra: str) -> dict[str, int]:
        self.runs += 1
        proc = subprocess.run([venv_tool("ansible-playbook"), "-i", str(self.inventory),
                               str(ANSIBLE_DIR / self.playbook), *extra],
                              cwd=ANSIBLE_DIR, env=self.env, capture_output=True, text=True, timeout=1200)
        log = self.work / f"playbook-{Path(self.playbook).stem}-{self.runs}.log"
        log.write_text(proc.stdout + proc.stderr)
        m = re.search(rf"^{HOST}\s+:\s+(.*)$", proc.stdout, re.M)
        assert m, f"no recap for {HOST} (exit {proc.returncode}), see {log}:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
        recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}
        assert recap["failed"] == 0 and recap["unreachable"] == 0 and proc.returncode == 0, \
            f"playbook failed {recap}, see {log}:\n{proc.stdout[-6000:]}"
        return recap


@pytest.fixture(scope="module")
def provisioned(deb_package, lintian_run, boot_root, loopback, moto_s3, log_dir):
    work = log_dir / "ansible"
    work.mkdir()
    for d in ("cp", "tmp"):
        (work / d).mkdir()
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = free_port()
    container = buildroot.BootedContainer(boot_root, prefix="ffansible", log_dir=work)
    prepare_sshd(container.root, port, (work / "id_ed25519.pub").read_text())
    container.start()
    try:
        wait_for(lambda: subprocess.run(
            ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "root@127.0.0.1", "true"],
            capture_output=True).returncode == 0, 60, f"sshd in the container on port {port}")
        inventory = work / "inventory"
        (inventory / "group_vars").mkdir(parents=True)
        shutil.copy(ANSIBLE_DIR / "inventories/pi.example/group_vars/fluxforge.yml", inventory / "group_vars")
        moto_s3.client().create_bucket(Bucket=BUCKET)
        hosts = {"fluxforge": {"hosts": {HOST: {
            "ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "fluxforge_package_deb": str(deb_package),
            "fluxforge_host_id": "ansibletest",
            "fluxforge_exchanges": [{"name": "binance", "ccxt": loopback.ccxt_config("binance"),
                                     "symbols": ["BTC/USDT", "ETH/USDT"], "book_depth": 20}],
            "fluxforge_collector": {"flush_interval": 0.5, "segment_max_seconds": 8},
            # live features on (docs/live.md): the pi preset's live limits, and the socket under systemd
            "fluxforge_etl": {"row_group_rows": 16384, "live": {"enabled": True, "replay_minutes": 5}},
            "fluxforge_sync": {"enabled": True, "bucket": BUCKET, "endpoint_url": moto_s3.endpoint,
                               "region": "us-east-1", "addressing_style": "path",
                               "aws_access_key_id": "${credential:fluxforge_s3_access_key_id}",
                               "aws_secret_access_key": "${credential:fluxforge_s3_secret_access_key}",
                               "require_time_sync": False},
        }}}}
        (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
        container.playbook = Playbook(work, inventory)
        container.check_on_fresh = container.playbook("--check", "--diff")
        container.first = container.playbook()
        yield container
    finally:
        if container.init_pid:
            dump = container.run(["journalctl", "--no-pager", "-n", "2000"], check=False)
            (work / "journal.txt").write_text(dump.stdout)
        container.stop()


def test_6_playbook_brings_a_fresh_host_to_the_running_appliance(provisioned):
    assert provisioned.check_on_fresh["failed"] == 0
    assert provisioned.first["changed"] > 0
    assert_appliance_up(provisioned)
    root = provisioned.root
    config = yaml.safe_load((root / "etc/fluxforge/config.yaml").read_text())
    assert config["host_id"] == "ansibletest"
    assert config["exchanges"][0]["symbols"] == ["BTC/USDT", "ETH/USDT"]
    secret = root / "etc/fluxforge/credentials/s3_secret_access_key"
    assert secret.stat().st_mode & 0o777 == 0o600
    mode = provisioned.run(["stat", "-c", "%a %U:%G", "/etc/fluxforge/config.yaml"]).stdout.strip()
    assert mode == "640 root:fluxforge", mode
    # Device class pi: the drop-in's tighter limit is what systemd applies.
    assert unit_props(provisioned, "fluxforge-collector.service", "MemoryMax")["MemoryMax"] == str(320 * 1024 * 1024)
    # ... and with etl.live.enabled, the pi preset's room for the live path (vars/main.yml)
    assert unit_props(provisioned, "fluxforge-etl.service", "MemoryHigh", "MemoryMax") == \
        {"MemoryHigh": str(448 * 1024 * 1024), "MemoryMax": str(576 * 1024 * 1024)}
    assert "SystemMaxUse=64M" in (root / "etc/systemd/journald.conf.d/50-appliance.conf").read_text()
    assert provisioned.run(["systemctl", "is-enabled", "systemd-time-wait-sync.service"]).stdout.strip() == "enabled"
    wait_for(lambda: sorted((root / "var/lib/fluxforge/features/hf").glob("exchange=*/symbol=*/date=*/part-*.parquet")),
             240, "features made on the Ansible-provisioned host")
    provisioned.run(["systemctl", "start", "fluxforge-sync.service"], timeout=600)
    assert unit_props(provisioned, "fluxforge-sync.service", "Result")["Result"] == "success"


def test_6_live_rows_reach_a_member_of_the_fluxforge_group(provisioned):
    """Live features under the packaged unit's sandbox: the ETL serves /run/fluxforge/live.sock,
    and a user added to the fluxforge group (docs/live.md, "Endpoints") receives hf rows with
    `fluxforge live`, replayed ones first -- the rows the segment job writes to Parquet -- and
    replayed rows again right after the ETL restarts."""
    provisioned.run(["useradd", "--create-home", "--groups", "fluxforge", "alice"],
                    check=False)  # a second test run on the same host: alice exists
    wait_for(lambda: running_with_status(provisioned, "fluxforge-etl.service") and
             "live" in running_with_status(provisioned, "fluxforge-etl.service"), 120, "the ETL's live STATUS=")
    out = provisioned.run(["runuser", "-u", "alice", "--", "fluxforge", "live", "--product", "hf",
                           "--symbol", "BTC/USDT", "--last", "5", "--count", "3", "--json"], timeout=180).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 3 and all(r["type"] == "row" and r["product"] == "hf" for r in rows), out
    assert {(r["exchange"], r["symbol"]) for r in rows} == {("binance", "BTC/USDT")}, out
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows), out
    # `fluxforge status` shows the event-to-publish latency from the unit's STATUS= (refreshed every
    # 5 s; "no live rows yet" until the first hf row published live)
    def live_latency_in_status() -> bool:
        status = provisioned.run(["systemd-run", "--quiet", "--pipe", "--wait", "--collect", "-p",
                                  "LoadCredential=fluxforge:/etc/fluxforge/credentials", "fluxforge", "status"],
                                 check=False).stdout
        return re.search(r"^live +event-to-publish p50 [0-9.]+s p99 [0-9.]+s", status, re.M) is not None

    wait_for(live_latency_in_status, 120, "the live latency in `fluxforge status`")
    # another user, outside the group, is refused by the socket's permissions
    provisioned.run(["useradd", "--create-home", "mallory"], check=False)
    refused = provisioned.run(["runuser", "-u", "mallory", "--", "fluxforge", "live", "--count", "1",
                               "--socket", "/run/fluxforge/live.sock"],
                              check=False, timeout=60)
    assert refused.returncode != 0 and "ermission" in refused.stderr, refused
    # a restart keeps the replay: the new process's ring begins with the recent rows already in
    # Parquet (etl/live_seed.py), read under the unit's sandbox before its socket opens
    def seeded() -> list[dict]:
        return journal(provisioned, "EVENT=live_replay_seeded", unit="fluxforge-etl.service")

    before = len(seeded())
    provisioned.run(["systemctl", "restart", "fluxforge-etl.service"], timeout=180)
    wait_for(lambda: len(seeded()) > before, 120, "the restarted ETL's replay seeded from Parquet")
    assert int(seeded()[-1]["ROWS"]) > 0
    wait_for(lambda: running_with_status(provisioned, "fluxforge-etl.service"), 120, "the ETL running again")
    out = provisioned.run(["runuser", "-u", "alice", "--", "fluxforge", "live", "--product", "hf",
                           "--symbol", "BTC/USDT", "--last", "5", "--count", "3", "--json"], timeout=180).stdout
    assert [json.loads(line)["replay"] for line in out.splitlines()] == [True] * 3, out


def test_6_second_run_changes_nothing(provisioned):
    recap = provisioned.playbook()
    assert recap["changed"] == 0, recap


def test_6_check_diff_on_provisioned_host_changes_nothing(provisioned):
    before = unit_props(provisioned, "fluxforge-collector.service", "MainPID")["MainPID"]
    recap = provisioned.playbook("--check", "--diff")
    assert recap["changed"] == 0, recap
    time.sleep(1)
    assert unit_props(provisioned, "fluxforge-collector.service", "MainPID")["MainPID"] == before


def fleet_status(provisioned, inventory: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([venv_tool("ansible-playbook"), "-i", str(inventory), str(ANSIBLE_DIR / "fleet-status.yml")],
                          cwd=ANSIBLE_DIR, env=provisioned.playbook.env, capture_output=True, text=True, timeout=600)
    (provisioned.playbook.work / f"fleet-status-{inventory.name}.log").write_text(proc.stdout + proc.stderr)
    return proc


# the status warnings that can come and go within seconds on a healthy host
TRANSIENT_WARNINGS = {"etl_lag", "stale_active", "stream_stale", "unit_inactive"}


def status_state(provisioned) -> str:
    """`fluxforge status` run as the playbook runs it (with the units' credentials), as a table state."""
    rc = provisioned.run(["systemd-run", "--quiet", "--pipe", "--wait", "--collect",
                          "-p", "LoadCredential=fluxforge:/etc/fluxforge/credentials",
                          "fluxforge", "status", "--json"], check=False).returncode
    return {0: "OK", 1: "WARNING", 2: "CRITICAL"}[rc]


def test_6_fleet_status_prints_one_table_and_fails_on_a_bad_host(provisioned):
    before = status_state(provisioned)
    proc = fleet_status(provisioned, provisioned.playbook.inventory)
    after = status_state(provisioned)
    assert re.search(r'"HOST\s+STATE\s+MSG/S\s+LAST MSG\s+ETL LAG\s+BACKLOG\s+DISK\s+WARNINGS"', proc.stdout), proc.stdout
    row = re.search(rf'"{HOST}\s+(OK|WARNING|CRITICAL)\s+([0-9.]+)\s+(\d+s|never)\s+(\d+)s\s+(\d+ files \d+ MiB)\s+'
                    r'(\d+)% *([a-z_,]*)"', proc.stdout)
    assert row, proc.stdout[-4000:]
    state, codes = row.group(1), set(row.group(7).split(",")) - {""}
    # one status call makes the row: its state and its warning codes agree
    assert (state == "OK") == (not codes), row.group(0)
    # The host's state may change between our calls and the playbook's (a segment waiting for the
    # ETL, a stream quiet for a moment). A state that neither call saw must come from such a warning.
    if state not in (before, after):
        assert codes <= TRANSIENT_WARNINGS, (before, row.group(0), after)
    assert float(row.group(2)) > 0, "the collector is running: msg/s must be positive"
    assert proc.returncode == (0 if state != "CRITICAL" else 2), proc.stdout[-3000:]

    # a host that cannot be reached is a row of the table and fails the run
    inventory = provisioned.playbook.work / "inventory-with-ghost"
    shutil.copytree(provisioned.playbook.inventory, inventory)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    ghost = dict(hosts["fluxforge"]["hosts"][HOST], ansible_port=free_port())
    hosts["fluxforge"]["hosts"]["ghost"] = ghost
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    proc = fleet_status(provisioned, inventory)
    assert re.search(r'"ghost\s+UNREACHABLE', proc.stdout), proc.stdout[-4000:]
    assert re.search(rf'"{HOST}\s+(OK|WARNING|CRITICAL)', proc.stdout)
    assert proc.returncode != 0 and "critical: ghost" in proc.stdout + proc.stderr
