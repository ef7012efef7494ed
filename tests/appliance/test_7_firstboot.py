"""fluxforge-firstboot.service in a booted container: the boot partition's config decides whether
the services run.

A directory at /boot/efi stands in for the VM's EFI system partition (the image test in
tests/image/ does the same on a real FAT partition under QEMU).  Steps in order: the package
is installed with a bad config on the "card" -> config.error.txt names the field, the
services stay down, SSH keys and hostname are in anyway; the config is fixed -> starting the
target imports it, the services run against the loopback exchange, the secrets are gone from
the card; running it again changes nothing.
"""
from __future__ import annotations

import pytest
import yaml

from container_probe import LONG_RUNNING, assert_appliance_up, unit_props, wait_for
from test_2_boot import appliance_config, install_deb

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz6bI1n3ZTvYy0Yk0bq7Jd3m0Y6QeJb3sJ7mKqXh2Vx user@laptop"
UNIT = "fluxforge-firstboot.service"


@pytest.fixture(scope="module")
def card_box(deb_package, boot_root, loopback, moto_s3, log_dir):
    from container_probe import booted_container

    logs = log_dir / "firstboot"
    logs.mkdir()
    with booted_container(boot_root, "fffirst", logs) as box:
        card = box.root / "boot/efi/fluxforge"
        (card / "credentials").mkdir(parents=True)
        cfg = appliance_config(loopback, moto_s3)
        cfg["host_id"] = "cardtest"
        cfg["sync"]["bucket"] = "fluxforge-cardtest"
        box.good_config = cfg
        bad = {**cfg, "collector": {**cfg["collector"], "flush_intervall": 1}}
        (card / "config.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
        (card / "credentials/s3_key_id").write_text("card-key")
        (card / "credentials/s3_secret").write_text("card-secret")
        (card / "hostname").write_text("cardbox\n")
        (card / "authorized_keys").write_text(KEY + "\n")
        moto_s3.client().create_bucket(Bucket="fluxforge-cardtest")
        install_deb(box, deb_package)
        box.card = card
        yield box


def test_1_bad_config_on_the_card_keeps_the_services_down(card_box):
    box, card = card_box, card_box.card
    p = wait_for(lambda: (q := unit_props(box, UNIT, "ActiveState", "Result"))["ActiveState"] == "failed" and q,
                 180, f"{UNIT} to fail on the bad config")
    assert p["Result"] == "exit-code"
    error = (card / "config.error.txt").read_text().splitlines()
    assert len(error) == 1 and error[0].startswith("fluxforge/config.yaml: "), error
    assert "collector.flush_intervall: unknown key" in error[0]
    for unit in ("fluxforge.target", *LONG_RUNNING):
        assert unit_props(box, unit, "ActiveState")["ActiveState"] in ("inactive", "failed"), unit
    assert box.run(["pgrep", "-u", "fluxforge"], check=False).returncode == 1, "a FluxForge process runs"
    # Not imported: the packaged config stays, the secrets stay on the card.
    assert "cardtest" not in (box.root / "etc/fluxforge/config.yaml").read_text()
    assert (card / "credentials/s3_secret").exists()
    # SSH access does not wait for a valid config.
    assert (box.root / "root/.ssh/authorized_keys").read_text() == KEY + "\n"
    assert (box.root / "etc/hostname").read_text() == "cardbox\n"


def test_2_fixed_config_is_imported_and_the_services_run(card_box, moto_s3):
    box, card = card_box, card_box.card
    (card / "config.yaml").write_text(yaml.safe_dump(box.good_config, sort_keys=False))
    # What the next boot does: multi-user.target wants fluxforge.target, whose services require firstboot.
    box.run(["systemctl", "start", "fluxforge.target"], timeout=600)
    assert unit_props(box, UNIT, "ActiveState")["ActiveState"] == "active"
    assert_appliance_up(box)
    assert not (card / "config.error.txt").exists()
    assert not list((card / "credentials").iterdir()), "the secrets stayed on the FAT partition"
    etc = box.root / "etc/fluxforge"
    assert yaml.safe_load((etc / "config.yaml").read_text())["host_id"] == "cardtest"
    st = box.run(["stat", "-c", "%a %U:%G", "/etc/fluxforge/config.yaml", "/etc/fluxforge/credentials/s3_secret"])
    assert st.stdout.split("\n")[:2] == ["640 root:fluxforge", "600 root:root"], st.stdout
    # The credentials reached the services: a sync run uploads with them.
    wait_for(lambda: list((box.root / "var/lib/fluxforge/segments/done").glob("seg-*")), 180, "a segment in done/")
    box.run(["systemctl", "start", "fluxforge-sync.service"], timeout=600)
    assert unit_props(box, "fluxforge-sync.service", "Result")["Result"] == "success"
    assert any("cardtest" in k for k in moto_s3.keys("fluxforge-cardtest"))


def test_3_running_again_changes_nothing(card_box):
    box = card_box
    files = ["/etc/fluxforge/config.yaml", "/etc/fluxforge/credentials/s3_secret", "/root/.ssh/authorized_keys",
             "/etc/hostname"]
    before = box.run(["stat", "-c", "%i %Y %a", *files]).stdout
    pid = unit_props(box, "fluxforge-collector.service", "MainPID")["MainPID"]
    box.run(["systemctl", "start", UNIT])  # RemainAfterExit: already active, a no-op
    box.run(["/usr/bin/fluxforge", "firstboot"])  # the import itself, again
    assert box.run(["stat", "-c", "%i %Y %a", *files]).stdout == before
    assert unit_props(box, "fluxforge-collector.service", "MainPID")["MainPID"] == pid
