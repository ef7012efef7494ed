"""Boot test: data_dir outside /var/lib/fluxforge on a .deb install (issue 17, item 11).

The units run with ProtectSystem=strict, so a data_dir elsewhere is read-only to them.
`fluxforge config check` must say so (naming the drop-in that fixes it), and the exact
commands of docs/operations.md ("data_dir on another path") must make the appliance run
with its data there: segments, features, nothing under /var/lib/fluxforge.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from container_probe import assert_appliance_up, booted_container, wait_for
from test_2_boot import install_deb

REPO = Path(__file__).resolve().parents[2]
DATA = "/srv/fluxforge"


def documented_commands() -> str:
    """The shell block under '### data_dir on another path' in docs/operations.md, as root."""
    text = (REPO / "docs/operations.md").read_text()
    section = text.split("### data_dir on another path", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    return block.replace("sudo ", "")


@pytest.fixture(scope="module")
def custom(deb_package, lintian_run, boot_root, loopback, log_dir):
    logs = log_dir / "data_dir"
    logs.mkdir()
    with booted_container(boot_root, "ffdata", logs) as container:
        etc = container.root / "etc" / "fluxforge"
        etc.mkdir(parents=True)
        (etc / "config.yaml").write_text(yaml.safe_dump({
            "data_dir": DATA, "host_id": "datadir",
            "exchanges": [{"name": "binance", "ccxt": loopback.ccxt_config("binance"),
                           "symbols": ["BTC/USDT"], "book_depth": 20}],
            "collector": {"flush_interval": 0.5, "segment_max_seconds": 8},
            "etl": {"reorder_window": 1}}, sort_keys=False))
        install_deb(container, deb_package)
        yield container


def test_custom_data_dir_warned_then_made_writable_by_the_documented_drop_in(custom):
    check = custom.run(["fluxforge", "config", "check", "--config", "/etc/fluxforge/config.yaml"], check=False)
    assert check.returncode == 0, check.stderr
    for unit in ("collector", "etl", "compact", "sync"):
        assert f"data_dir {DATA} is read-only for fluxforge-{unit}.service" in check.stderr, check.stderr

    custom.run(["bash", "-euc", documented_commands()], timeout=300)

    check = custom.run(["fluxforge", "config", "check", "--config", "/etc/fluxforge/config.yaml"], check=False)
    assert check.returncode == 0 and "warning" not in check.stderr, check.stderr
    assert_appliance_up(custom)
    root = custom.root / DATA.lstrip("/")
    wait_for(lambda: sorted(root.glob("segments/done/seg-*/manifest.json")), 240, f"segments done under {DATA}")
    wait_for(lambda: sorted(root.glob("features/hf/exchange=*/symbol=*/date=*/part-*.parquet")), 120,
             f"features under {DATA}")
    assert not list((custom.root / "var/lib/fluxforge").glob("segments/*/seg-*"))
    custom.run(["systemctl", "start", "fluxforge-compact.service"], timeout=600)
    assert custom.run(["systemctl", "show", "-p", "Result", "--value", "fluxforge-compact.service"]).stdout.strip() \
        == "success"
