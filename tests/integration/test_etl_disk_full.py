"""The real `fluxforge etl` on a full disk waits and resumes by itself (issue 17 item 1).

It used to exit 75 -- at start-up when `recover()` hit ENOSPC, and in its loop
when the retry's `recover()` raised a second time -- so after five restarts
systemd left the unit failed even once space returned.  Here a small tmpfs is
the data_dir, a filler file takes every free byte, and a test NOTIFY_SOCKET
sees what systemd would: READY=1, STATUS= saying DISK FULL, WATCHDOG=1 kept
up, and the backlog done once the filler is removed.
"""
from __future__ import annotations

import errno
import signal
import subprocess
import time
from pathlib import Path

from collector_support import subprocess_env
from etl_support import etl_config, fluxforge_cmd, synthetic_market, write_segments
from notify_listener import NotifyListener


def fill(mnt: Path) -> Path:
    """Take every free block of the tmpfs with one file."""
    filler = mnt / "filler"
    chunk = b"\0" * (1 << 16)
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def wait(pred, timeout, proc, what):
    deadline = time.monotonic() + timeout
    while not pred():
        assert proc.poll() is None, f"etl exited {proc.returncode} while waiting for {what}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_etl_waits_out_a_full_disk_at_start_and_in_its_loop(tmp_path, mount_tmpfs):
    mnt = mount_tmpfs("24m")
    data = mnt / "data"
    segs = data / "segments"
    market = synthetic_market(seconds=30)
    staged = write_segments(tmp_path / "staging", market, 3, seconds=30)
    # a crash left the first segment in processing/ (not checkpointed): start-up recovery must redo it
    (segs / "processing").mkdir(parents=True)
    (segs / "ready").mkdir()
    import shutil
    shutil.copytree(staged[0], segs / "processing" / staged[0].name)
    incoming = mnt / "incoming"       # later segments, on the same file system: they arrive by rename
    for st in staged[1:]:
        shutil.copytree(st, incoming / st.name)
    cfg = etl_config(tmp_path / "c.yaml", data)
    filler = fill(mnt)
    listener = NotifyListener(tmp_path / "notify.sock")
    proc = subprocess.Popen(fluxforge_cmd("etl", "--config", str(cfg)),
                            env=subprocess_env(NOTIFY_SOCKET=listener.path, WATCHDOG_USEC="400000"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done = segs / "done"

    def statuses():
        return [m for m in listener.messages if m.startswith("STATUS=")]

    try:
        # 1. start-up: recovery hits ENOSPC -> READY (scanned) with DISK FULL, still running, watchdog kept
        wait(lambda: listener.has("READY=1"), 60, proc, "READY=1")
        wait(lambda: any("DISK FULL" in s for s in statuses()), 30, proc, "STATUS DISK FULL")
        n_wd = len(listener.times("WATCHDOG=1"))
        wait(lambda: len(listener.times("WATCHDOG=1")) >= n_wd + 3, 30, proc, "WATCHDOG=1 while waiting")
        assert not (done.exists() and list(done.iterdir()))
        filler.unlink()
        wait(lambda: done.is_dir() and len(list(done.iterdir())) == 1, 60, proc, "recovered segment done")
        # 2. in the loop: new segments arrive while the disk is full again
        filler = fill(mnt)
        mark = len(statuses())
        for st in sorted(incoming.iterdir()):
            st.rename(segs / "ready" / st.name)
        wait(lambda: any("DISK FULL" in s for s in statuses()[mark:]), 60, proc, "DISK FULL again")
        n_wd = len(listener.times("WATCHDOG=1"))
        wait(lambda: len(listener.times("WATCHDOG=1")) >= n_wd + 3, 30, proc, "WATCHDOG=1 while waiting again")
        filler.unlink()
        wait(lambda: len(list(done.iterdir())) == 3, 120, proc, "all segments done")
        assert not list((segs / "failed").iterdir()) and not list((segs / "processing").iterdir())
        wait(lambda: "DISK FULL" not in statuses()[-1], 30, proc, "STATUS without DISK FULL")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        err = proc.stderr.read()
        listener.close()
    assert rc == 0, err
    assert "etl_disk_full" in err and "etl_resumed" in err
