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

GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100


def tune_after_startup() -> None:
    gc.collect()
    gc.freeze()  # start-up objects: never scanned again
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
