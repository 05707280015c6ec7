"""Cap glibc's malloc arenas, so a process with many threads fits under an address-space limit.

glibc gives each thread that allocates concurrently its own arena, up to eight per CPU, and every arena
reserves 64 MiB of address space up front (``HEAP_MAX_SIZE``), used or not.  DuckDB's first query starts
about ten threads: under ``ulimit -v`` / ``RLIMIT_AS`` of 1 GiB their arenas alone took ~600 MiB, and
``medcurate erase`` died with "cannot allocate memory for thread-local data" before reading a byte.
Capping the arenas costs some lock contention between threads, nothing else: memory is still freed to and
reused from the shared arenas.

``mallopt(M_ARENA_MAX)`` only governs arenas created afterwards, so call this before the threads start
(their first allocation picks the arena).  Elsewhere than glibc (musl, macOS) there is no such call and no
such reservation; nothing is done.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's malloc.h
DEFAULT_ARENAS = 2


def cap_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Let at most ``arenas`` malloc arenas exist from now on; True when the C library took the setting."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    taken = bool(mallopt(M_ARENA_MAX, arenas))
    if not taken:
        log.warning("malloc arenas could not be capped at %d", arenas)
    return taken
