"""Process-level memory settings applied once at start-up, before any thread exists.

glibc gives every thread that allocates its own malloc arena (up to 8 per
core). The SQLite worker thread, the executor and the event loop then each
keep their own freed-but-unreturned memory, which shows up as RSS that no
socket uses. One arena measured 21.3 -> 18.8 KiB of RSS per idle socket at
3,000 sockets (bench/compare.py --capacity-only); the loop thread does
nearly all allocation, so contention between arenas costs nothing here.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Cap glibc's malloc arenas unless MALLOC_ARENA_MAX already set it. False off glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # the operator chose; glibc read it at start-up
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no such knob, nothing to do
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
