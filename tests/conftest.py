"""Shared pytest fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data" / "binance-spot"


@pytest.fixture
def shared_capture():
    """Path to the real Binance captures, or skip cleanly when ../shared is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data/binance-spot not present")
    return SHARED_DATA


@pytest.fixture
def mount_tmpfs(tmp_path):
    """Factory: mount a size-limited tmpfs (a real small filesystem for full-disk tests).

    Needs root (CI runs as root).  It fails, never skips, when it cannot mount: a
    skip would hide the full-disk paths these tests exist for.  Every mount is
    lazily unmounted at teardown.
    """
    import os
    import subprocess

    mounted: list[Path] = []

    def mount(size: str, name: str = "mnt") -> Path:
        if os.geteuid() != 0:
            pytest.fail("mounting a size-limited tmpfs needs root: run the suite as root (CI does)")
        mnt = tmp_path / name
        mnt.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
