"""Hand the memory glibc's malloc keeps in free chunks back to the system (`give_back`).

Why: the ETL allocates on several threads (the live steps and the segment jobs run in
asyncio's worker threads), so glibc serves them from several arenas, and a freed chunk goes
back to the arena it came from.  glibc returns memory to the system by itself only from the
top of an arena: free chunks below a live one stay resident.  With live features on at 20
symbols (60 s segments, one subscriber of everything), the ETL's resident memory levelled
off at 360-400 MB, 70-110 MB of it free chunks (mallinfo2 `fordblks`), while the memory
in use stayed at ~90 MB (malloc) + ~33 MB (Arrow) -- against the unit's `MemoryHigh=320M`,
above which the kernel reclaims and throttles.  `malloc_trim(0)` gives every whole free
page of every arena back (MADV_DONTNEED): ~20 ms for 170 MB freed, under 1 ms when little
was freed since the last call.  The ETL service calls it every TRIM_INTERVAL seconds, on a
worker thread.  Where the C library is not glibc it does nothing.
"""
from __future__ import annotations

import ctypes

from ..libc import function

TRIM_INTERVAL = 30.0  # seconds between two calls in the ETL service


def malloc_trim():
    """glibc's `malloc_trim`, or None (another C library)."""
    return function("malloc_trim", (ctypes.c_size_t,))


def give_back() -> bool:
    """Return the whole free pages malloc holds to the system; True if any was returned
    (False too where the C library has no `malloc_trim`)."""
    fn = malloc_trim()
    return bool(fn(0)) if fn is not None else False
