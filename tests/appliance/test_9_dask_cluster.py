"""Step 9: the dask_cluster role turns a provisioned appliance into a Dask scheduler + workers,
and `fluxforge backfill --engine dask --address` on it equals a replay of the same bronze.

Connection and container as in test_3_ansible (real SSH to a fresh booted container).
site.yml installs the package and runs the appliance (collector on the loopback
exchange, ETL, sync to moto); dask.yml adds fluxforge-dask-scheduler.service and
fluxforge-dask-worker.service (2 worker processes, S3 keys as a systemd credential).
The backfill reads the bronze that sync uploaded and writes to S3 through the
workers; the reference is a replay of the same segments on the test host,
compared by table content (the host's and the package's pyarrow may differ, so
Parquet bytes may too).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

import buildroot
from conftest import REPO
from container_probe import unit_props, wait_for
from test_3_ansible import ANSIBLE_DIR, Playbook, free_port, prepare_sshd

sys.path.insert(0, str(REPO / "tests"))
from etl_support import tables_equal  # noqa: E402

HOST = "appliance01"
BUCKET = "fluxforge-dasktest"


@pytest.fixture(scope="module")
def dask_host(deb_package, boot_root, loopback, moto_s3, log_dir):
    work = log_dir / "dask-ansible"
    work.mkdir()
    for d in ("cp", "tmp"):
        (work / d).mkdir()
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port, dask_port = free_port(), free_port()
    container = buildroot.BootedContainer(boot_root, prefix="ffdask", log_dir=work)
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
        host = {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "root",
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"}
        hosts = {
            "fluxforge": {"hosts": {HOST: {
                **host, "fluxforge_package_deb": str(deb_package), "fluxforge_host_id": "dasktest",
                "fluxforge_exchanges": [{"name": "binance", "ccxt": loopback.ccxt_config("binance"),
                                         "symbols": ["BTC/USDT", "ETH/USDT"], "book_depth": 20}],
                "fluxforge_collector": {"flush_interval": 0.5, "segment_max_seconds": 8},
                "fluxforge_sync": {"enabled": True, "bucket": BUCKET, "endpoint_url": moto_s3.endpoint,
                                   "region": "us-east-1", "addressing_style": "path",
                                   "aws_access_key_id": "${credential:fluxforge_s3_access_key_id}",
                                   "aws_secret_access_key": "${credential:fluxforge_s3_secret_access_key}",
                                   "require_time_sync": False}}}},
            "dask_scheduler": {"hosts": {HOST: None}},
            "dask_workers": {"hosts": {HOST: None}},
            "all": {"vars": {"dask_cluster_scheduler_host": "127.0.0.1", "dask_cluster_scheduler_port": dask_port,
                             "dask_cluster_nworkers": 2, "dask_cluster_aws_access_key_id": "testing",
                             "dask_cluster_aws_secret_access_key": "testing"}},
        }
        (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
        Playbook(work, inventory)()
        container.dask = Playbook(work, inventory, "dask.yml")
        container.dask_check_on_fresh = container.dask("--check", "--diff")
        container.dask_first = container.dask()
        container.dask_address = f"tcp://127.0.0.1:{dask_port}"
        yield container
    finally:
        if container.init_pid:
            dump = container.run(["journalctl", "--no-pager", "-n", "2000"], check=False)
            (work / "journal.txt").write_text(dump.stdout)
        container.stop()


def test_9_dask_units_run_and_the_role_is_idempotent(dask_host):
    assert dask_host.dask_check_on_fresh["failed"] == 0
    assert dask_host.dask_first["changed"] > 0
    for unit in ("fluxforge-dask-scheduler.service", "fluxforge-dask-worker.service"):
        assert unit_props(dask_host, unit, "ActiveState")["ActiveState"] == "active", unit
    cred = dask_host.root / "etc/fluxforge/credentials/dask_aws_credentials"
    assert cred.stat().st_mode & 0o777 == 0o600
    assert dask_host.dask()["changed"] == 0
    assert dask_host.dask("--check", "--diff")["changed"] == 0


def test_9_backfill_on_the_cluster_equals_replay(dask_host, moto_s3, tmp_path):
    import pyarrow.parquet as pq

    from fluxforge.config import FeatureOptions
    from fluxforge.etl.replay import find_segments, replay

    root = dask_host.root
    wait_for(lambda: len(list((root / "var/lib/fluxforge/segments/done").glob("seg-*"))) >= 2, 240,
             "two ETL'd segments on the appliance")
    dask_host.run(["systemctl", "stop", "fluxforge-sync.timer"])
    dask_host.run(["systemctl", "start", "fluxforge-sync.service"], timeout=600)
    assert unit_props(dask_host, "fluxforge-sync.service", "Result")["Result"] == "success"
    # The client side runs with the appliance's config (its ${credential:...} references need the
    # credentials), as a transient unit; the workers use their own keys from the role.
    proc = dask_host.run(["systemd-run", "--pipe", "--wait", "--quiet",
                          "-p", "LoadCredential=fluxforge:/etc/fluxforge/credentials",
                          "/usr/bin/fluxforge", "backfill", f"s3://{BUCKET}/fluxforge", "--out",
                          f"s3://{BUCKET}/backfill", "-c", "/etc/fluxforge/config.yaml", "--engine", "dask",
                          "--address", dask_host.dask_address], check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    client = moto_s3.client()
    for prefix, dest in (("fluxforge/bronze/", tmp_path / "bronze"), ("backfill/", tmp_path / "got")):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for obj in page.get("Contents", []):
                out = dest / obj["Key"][len(prefix):]
                out.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(BUCKET, obj["Key"], str(out))
    segs = find_segments([p for p in (tmp_path / "bronze").glob("host=*/date=*")])
    meta = json.loads((tmp_path / "got" / "_backfill.json").read_text())
    assert meta["complete"] and len(meta["units_done"]) == 2
    config = yaml.safe_load((root / "etc/fluxforge/config.yaml").read_text())
    replay(segs, tmp_path / "ref", FeatureOptions(**(config.get("etl") or {}).get("features", {})),
           (config.get("etl") or {}).get("row_group_rows", 65536))
    want = sorted(p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("part-*.parquet"))
    got = sorted(p.relative_to(tmp_path / "got") for p in (tmp_path / "got").rglob("part-*.parquet"))
    assert want and got == want
    for rel in want:
        assert tables_equal(pq.read_table(tmp_path / "got" / rel).replace_schema_metadata(None),
                            pq.read_table(tmp_path / "ref" / rel).replace_schema_metadata(None)), rel
    # The workers ran Arrow as `fluxforge etl` does: mimalloc without transparent huge pages
    # (the unit's MIMALLOC_ALLOW_THP=0; fluxforge/etl/__init__.py says why).
    listed = dask_host.run(["sh", "-c", "grep -l fluxforge-dask-worker.service /proc/[0-9]*/cgroup"], check=False).stdout
    pids = [line.split("/")[2] for line in listed.split()]
    with_arrow = [p for p in pids if "libarrow" in dask_host.run(["cat", f"/proc/{p}/maps"], check=False).stdout]
    assert with_arrow, f"no worker process of {pids} has Arrow loaded"
    for pid in with_arrow:
        assert "THP_enabled:\t0" in dask_host.run(["cat", f"/proc/{pid}/status"]).stdout, pid
