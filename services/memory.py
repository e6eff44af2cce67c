"""Process memory settings for the servers.

glibc gives each thread that allocates concurrently an arena of its own (up to 8 per core) and
memory freed in one arena is not handed to another thread's allocations. A server thread pool
serves consecutive requests on different threads, so a key set evicted from the byte-bounded
cache by one thread leaves its memory in that thread's arena while the next thread allocates
the new one elsewhere: resident memory then grows past the cache budget. One arena makes freed
memory reusable by whichever thread serves next. Measured (tests/test_memory_budget.py, 20 key
sets, 40 MB budget, an idle 2-core machine): the peak exceeded baseline + budget in 4 of 10
runs with glibc's default, 1 of 6 with 2 arenas, 0 of 12 with 1.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger("cryptorec.memory")

# mallopt's parameter number for the arena limit (glibc malloc.h: M_ARENA_MAX).
M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Ask glibc for at most `arenas` malloc arenas in this process (call before threads
    start). Leaves an explicit MALLOC_ARENA_MAX alone; False where libc is not glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        log.debug("not glibc: malloc arenas left as they are")
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))
