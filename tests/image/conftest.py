"""Fixtures of the image boot test: the .deb, the image built from it, and the host-side servers.

Why they come from tests/appliance/conftest.py: the loopback exchange, moto and the
host tools are the same; they are loaded from that file rather than copied.  The .deb
is FLUXFORGE_TEST_DEB when set (`make test` passes the one test-appliance just built),
else built here as `make deb` does.  The image is built into out/image/ and reused while
its inputs (the cached root's key and the assembly code) are unchanged.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

_spec = importlib.util.spec_from_file_location("appliance_fixtures", REPO / "tests/appliance/conftest.py")
_appliance = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_appliance)
loopback = _appliance.loopback
moto_s3 = _appliance.moto_s3

OUT = REPO / "out" / "image"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.image)


@pytest.fixture(scope="session")
def image_tools():
    import image_boot

    image_boot.host_tools("--image", ("mmdebstrap", "mcopy", "sfdisk", "debugfs", "qemu-system-x86_64", "qemu-img",
                                      "socat"))


@pytest.fixture(scope="session")
def image_deb(image_tools) -> Path:
    import image_boot

    return image_boot.fluxforge_deb("amd64", OUT)


@pytest.fixture(scope="session")
def amd64_image(image_deb) -> Path:
    """dist-style image files in out/image/, from the cached root; returns the raw .img."""
    import build_image

    OUT.mkdir(parents=True, exist_ok=True)
    return build_image.build("amd64", image_deb, OUT, compress=False, reuse=True)["img"]
