"""C library functions through ctypes, each looked up once (`function`).

Why one place: `syncfs` (fsio.py) and glibc's `malloc_trim` (etl/memory_trim.py) are optional
C library calls whose absence (another C library, an older kernel's libc) means a fallback,
not an error; each caller had its own lookup and hand-made cache.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def function(name: str, argtypes: tuple = (), restype=ctypes.c_int):
    """The C library's `name` (errno kept: ctypes.get_errno) with these argument and result
    types, or None where there is no C library to load or it has no such function."""
    lib = ctypes.util.find_library("c")
    if not lib:
        return None
    try:
        fn = getattr(ctypes.CDLL(lib, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = list(argtypes), restype
    return fn
