"""Checks of the appliance files that need no container: the unit contract of the
issue, the sandbox score on the host's systemd-analyze, package metadata, and the
Ansible tree (ansible-lint production profile, syntax, example inventories).

The authoritative `systemd-analyze verify/security` runs are in test_boot.py, inside
the booted container against the installed units; the host run here fails fast.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from unit_files import SYSTEMD, unit_file

SERVICES = ("fluxforge-collector.service", "fluxforge-etl.service", "fluxforge-compact.service", "fluxforge-sync.service",
            "fluxforge-revive.service")


def one(unit: dict, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= missing"
    return values[-1]


@pytest.mark.parametrize("name,watchdog", [("fluxforge-collector.service", "30s"), ("fluxforge-etl.service", "120s")])
def test_long_running_service_contract(name, watchdog):
    u = unit_file(name)
    expect = {"Type": "notify", "NotifyAccess": "main", "WatchdogSec": watchdog, "Restart": "on-failure",
              "RestartPreventExitStatus": "78 73", "User": "fluxforge", "StateDirectory": "fluxforge",
              "ConfigurationDirectory": "fluxforge"}
    for key, value in expect.items():
        assert one(u, "Service", key) == value, key
    for key in ("RestartSec", "TimeoutStopSec", "LoadCredential", "MemoryHigh", "MemoryMax"):
        one(u, "Service", key)
    for key in ("StartLimitIntervalSec", "StartLimitBurst"):
        one(u, "Unit", key)
        assert key not in u["Service"], f"{key} belongs in [Unit]"
    assert one(u, "Install", "WantedBy") == "fluxforge.target"
    assert one(u, "Unit", "PartOf") == "fluxforge.target"


def test_etl_yields_to_the_collector():
    u = unit_file("fluxforge-etl.service")
    assert (one(u, "Service", "Nice"), one(u, "Service", "IOSchedulingClass"),
            one(u, "Service", "CPUSchedulingPolicy")) == ("10", "idle", "batch")


def test_etl_runtime_directory_holds_the_live_socket_for_the_group():
    """live.sock (docs/live.md) lives in /run/fluxforge: the group may traverse, others may not."""
    u = unit_file("fluxforge-etl.service")
    assert (one(u, "Service", "RuntimeDirectory"), one(u, "Service", "RuntimeDirectoryMode")) == ("fluxforge", "0750")
    assert one(u, "Service", "Group") == "fluxforge"
    assert "AF_UNIX" in one(u, "Service", "RestrictAddressFamilies").split()


@pytest.mark.parametrize("name", ["fluxforge-compact", "fluxforge-sync"])
def test_oneshots_are_timer_driven(name):
    service, timer = unit_file(f"{name}.service"), unit_file(f"{name}.timer")
    assert one(service, "Service", "Type") == "oneshot"
    assert "Install" not in service, "a oneshot is started by its timer, never enabled itself"
    one(timer, "Timer", "OnCalendar")
    one(timer, "Timer", "RandomizedDelaySec")
    assert (one(timer, "Timer", "Persistent"), one(timer, "Timer", "AccuracySec")) == ("true", "1us")
    assert one(timer, "Install", "WantedBy") == "fluxforge.target"


def test_revive_is_a_periodic_root_oneshot_of_the_target():
    """fluxforge-revive (maintenance/revive.py): every 15 min from the target's start, never at once
    (OnBootSec= would fire at installation on a host up for longer), and stopped with the target."""
    service, timer = unit_file("fluxforge-revive.service"), unit_file("fluxforge-revive.timer")
    assert (one(service, "Service", "Type"), one(service, "Service", "ExecStart")) == ("oneshot",
                                                                                     "/usr/bin/fluxforge revive")
    assert "Install" not in service and "User" not in service["Service"]
    assert (one(timer, "Timer", "OnActiveSec"), one(timer, "Timer", "OnUnitActiveSec")) == ("15min", "15min")
    assert "OnBootSec" not in timer["Timer"]
    for u in (service, timer):
        assert one(u, "Unit", "PartOf") == "fluxforge.target"
    assert one(timer, "Install", "WantedBy") == "fluxforge.target"


def test_sync_waits_for_network_and_clock():
    u = unit_file("fluxforge-sync.service")
    after = " ".join(u["Unit"]["After"]).split()
    assert {"network-online.target", "time-sync.target"} <= set(after)
    assert "network-online.target" in " ".join(u["Unit"]["Wants"])


def test_sysusers_and_tmpfiles():
    assert re.search(r"^u\s+fluxforge\s", (SYSTEMD / "sysusers.d/fluxforge.conf").read_text(), re.M)
    tmpfiles = (SYSTEMD / "tmpfiles.d/fluxforge.conf").read_text()
    assert re.search(r"^d\s+/var/lib/fluxforge\s+0750\s+fluxforge\s+fluxforge", tmpfiles, re.M)
    assert re.search(r"^d\s+/etc/fluxforge/credentials\s+0700\s+root\s+root", tmpfiles, re.M)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="host has no systemd-analyze; test_boot checks in the container")
@pytest.mark.parametrize("name", SERVICES)
def test_sandbox_exposure_on_host(name):
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(SYSTEMD / name)],
                         capture_output=True, text=True, check=True).stdout
    exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    assert exposure <= 2.0, out


def test_debian_version_matches_pyproject():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    first = (REPO / "packaging/debian/changelog").read_text().splitlines()[0]
    assert first.startswith(f"fluxforge ({version}"), first


def ansible_tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not in {path.parent}: `make test-appliance` installs the `appliance` extra")
    return str(path)


def test_ansible_lint_production_profile_is_clean():
    proc = subprocess.run([ansible_tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor"],
                          cwd=REPO / "ansible", capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("playbook", ["site.yml", "fleet-status.yml"])
@pytest.mark.parametrize("inventory", ["pi.example", "cloud.example"])
def test_playbook_syntax(inventory, playbook):
    proc = subprocess.run([ansible_tool("ansible-playbook"), "--syntax-check", "-i", f"inventories/{inventory}",
                           playbook], cwd=REPO / "ansible", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def shape(node):
    """The structure of a YAML tree with every value blanked: what must match between inventories."""
    if isinstance(node, dict):
        return {k: shape(v) for k, v in node.items()}
    if isinstance(node, list):
        return [shape(v) for v in node[:1]]
    return type(node).__name__


def test_example_inventories_differ_only_in_variables():
    pi, cloud = REPO / "ansible/inventories/pi.example", REPO / "ansible/inventories/cloud.example"
    files = sorted(p.relative_to(pi) for p in pi.rglob("*.yml"))
    assert files == sorted(p.relative_to(cloud) for p in cloud.rglob("*.yml"))
    differing = 0
    for rel in files:
        a, b = yaml.safe_load((pi / rel).read_text()), yaml.safe_load((cloud / rel).read_text())
        assert shape(a) == shape(b), f"{rel}: structure differs"
        differing += a != b
    assert differing, "the examples should differ in their variables"


def test_config_file_is_0640_root_fluxforge_from_the_deb_and_from_ansible():
    """The config may hold secrets: never world-readable, never printed by `ansible-playbook --diff`."""
    tasks = yaml.safe_load((REPO / "ansible/roles/fluxforge/tasks/config.yml").read_text())
    write = next(t for t in tasks if (t.get("ansible.builtin.template") or {}).get("dest") == "/etc/fluxforge/config.yaml")
    args = write["ansible.builtin.template"]
    assert (args["owner"], args["group"], args["mode"]) == ("root", "fluxforge", "0640")
    assert write.get("diff") is False
    group = [i for i, t in enumerate(tasks) if (t.get("ansible.builtin.group") or {}).get("name") == "fluxforge"]
    assert group and group[0] < tasks.index(write), "the group must exist before the file is given to it"
    rules = (REPO / "packaging/debian/rules").read_text()
    assert re.search(r"^execute_after_dh_fixperms:\n\tchmod 0640 \$\(PKG\)/etc/fluxforge/config\.yaml$", rules, re.M)
    postinst = (REPO / "packaging/debian/fluxforge.postinst").read_text()
    steps = [postinst.index(s) for s in ("systemd-sysusers", "chown root:fluxforge /etc/fluxforge/config.yaml",
                                         "chmod 0640 /etc/fluxforge/config.yaml", "#DEBHELPER#")]
    assert steps == sorted(steps), "group first, then the file, all before debhelper starts the services"
