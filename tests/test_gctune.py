"""The node's collector watch: a collection long enough to stall deliveries is logged with its cost."""
from __future__ import annotations

import gc
import logging

from notisync.runtime import gctune


def test_slow_collections_are_logged_and_fast_ones_are_not(caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="notisync.runtime.gctune")
    gctune.watch_slow_collections()
    gctune.watch_slow_collections()  # idempotent: one callback, one line per collection
    try:
        # Below the threshold nothing is logged. The threshold is raised for this
        # step: how long a full collection of the test process takes depends on
        # everything the suite imported before it, not on the code under test.
        monkeypatch.setattr(gctune, "SLOW_COLLECTION", 60.0)
        gc.collect()
        assert not [r for r in caplog.records if "garbage collection" in r.getMessage()]
        monkeypatch.setattr(gctune, "SLOW_COLLECTION", 0.0)  # every collection now counts as slow
        gc.collect()
        lines = [r.getMessage() for r in caplog.records if "garbage collection" in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith("garbage collection of generation 2 took")
    finally:
        gc.callbacks.remove(gctune._watch)
