"""Garbage-collector settings for a node: fewer, cheaper collections.

Nearly everything a node allocates per message (frames, dicts, futures) is
freed by reference counting; the cyclic collector only has to find the odd
cycle. With the default gen-0 threshold (700) it ran hundreds of times a
second under load, and every full collection walked every object of every
connected socket. Objects that exist after start-up (modules, the app,
the services) are frozen out of collection altogether.
"""
from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100


def tune_after_startup() -> None:
    gc.collect()
    gc.freeze()  # start-up objects: never scanned again
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
    watch_slow_collections()


SLOW_COLLECTION = 0.1  # seconds: a collection this long shows in delivery latency
_started: list[float] = []


def _watch(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
    elif _started:
        took = time.perf_counter() - _started.pop()
        if took >= SLOW_COLLECTION:
            log.warning("garbage collection of generation %d took %.0f ms (%d collected)",
                        info.get("generation", -1), took * 1000, info.get("collected", 0))


def watch_slow_collections() -> None:
    """Log collections long enough to stall deliveries, so a latency spike has a named cause."""
    if _watch not in gc.callbacks:
        gc.callbacks.append(_watch)
