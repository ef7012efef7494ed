"""Fixtures of the appliance test: the built .deb, cached bookworm roots, and the
host-side servers (loopback exchange, moto S3) that the containers talk to.

Why session-scoped: building the .deb and bootstrapping roots are the expensive
parts (minutes); every test module shares them.  The containers share the host's
network, so a server the test starts on 127.0.0.1 with an ephemeral port is
reachable from inside a container at the same address.

Set FLUXFORGE_TEST_DEB=/path/to/fluxforge_*.deb to test an already built package
instead of building one (quicker iterations on the tests themselves).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))

import build_deb  # noqa: E402
import buildroot  # noqa: E402


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.appliance)


@pytest.fixture(scope="session")
def log_dir() -> Path:
    """Container consoles, journals and playbook logs of the last run: out/appliance/ (git-ignored)."""
    path = REPO / "out" / "appliance"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def host_tools():
    """Root, and the host packages from packaging/install-host-deps.sh (apt-get update first)."""
    if os.geteuid() != 0:
        pytest.skip("the appliance test needs root (debootstrap, mount, systemd-nspawn); CI runs as root")
    subprocess.run([str(REPO / "packaging" / "install-host-deps.sh")], check=True)
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "lintian"):
        assert shutil.which(tool), f"{tool} missing after install-host-deps.sh"


@pytest.fixture(scope="session")
def deb_package(host_tools, log_dir) -> Path:
    """The .deb under test, built from this tree in a clean bookworm root as `make deb` does
    (kept in out/appliance/dist/).  lintian runs in the background meanwhile (`lintian_run`)."""
    prebuilt = os.environ.get("FLUXFORGE_TEST_DEB")
    if prebuilt:
        return Path(prebuilt).resolve()
    return build_deb.build(build_deb.native_arch(), log_dir / "dist", lintian=False)


@pytest.fixture(scope="session")
def lintian_run(deb_package, log_dir):
    """lintian on the built .deb, started at once and checked by test_4_package (it takes
    a minute or two, which overlaps with booting the containers)."""
    log = log_dir / "lintian.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen(build_deb.lintian_argv(deb_package), stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def boot_root(host_tools) -> Path:
    """A cached minbase bookworm with systemd, sshd and python3, as a fresh image has."""
    return buildroot.cached_root("boot", build_deb.native_arch())


@pytest.fixture(scope="session")
def loopback():
    """The project's loopback exchange (Binance wire protocol) on the host, ephemeral port."""
    from fluxforge.loopback.process import LoopbackProcess

    with LoopbackProcess(["--symbols", "BTC/USDT,ETH/USDT", "--rate", "20", "--seed", "7"]) as lp:
        yield lp


class MotoS3:
    """moto's S3 in server mode on 127.0.0.1 (real HTTP), plus a boto3 client to inspect it."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def stop(self):
        self.server.stop()


@pytest.fixture(scope="session")
def moto_s3():
    s3 = MotoS3()
    try:
        yield s3
    finally:
        s3.stop()
