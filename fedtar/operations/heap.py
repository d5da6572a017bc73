"""Giving freed memory back to the operating system.

glibc's allocator keeps the pages of freed Python and torch objects for reuse; after a round's replies
or an evicted site runtime are freed, a long simulation's RSS then keeps the high-water mark of
every round and grows with fragmentation (benchmarks/simulation_scale.py). `malloc_trim(0)` returns
the free pages at the heap's top and inside it. Called where much was just freed: after each
round's aggregation on the server, and after a site runtime leaves the clients' cache. A no-op where
the C library has no malloc_trim (macOS, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache


@cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Return freed heap pages to the OS; True when the C library could do it."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
