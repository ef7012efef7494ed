"""etl/memory_trim.py: free chunks a worker thread's arena keeps go back to the system."""
import threading
from pathlib import Path

import pytest

from fluxforge.etl import memory_trim


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(memory_trim.malloc_trim() is None, reason="the C library is not glibc")
def test_free_chunks_between_live_ones_are_given_back():
    kept = []

    def allocate():  # as the ETL's worker threads do: many mid-sized buffers, most freed, some kept
        blocks = [bytearray(64 * 1024) for _ in range(3000)]  # ~190 MB in this thread's arena
        kept.extend(blocks[::10])  # one in ten stays alive: the free ones between cannot merge into the top

    memory_trim.give_back()
    t = threading.Thread(target=allocate)
    t.start()
    t.join()
    before = rss_mb()
    assert memory_trim.give_back() is True
    after = rss_mb()
    assert before - after > 100, (before, after)  # ~170 MB freed; glibc had kept it resident
    assert len(kept) == 300 and all(len(b) == 64 * 1024 for b in kept)
