"""Notifications stored but not yet known to be in every recipient's stream.

The ingest step order (``notisync/core/notifications.py: NotificationService.create``)
inserts each notification with ``pending`` set before it fans it out, and
clears the flag here afterwards. A row left pending (the node died between
its commit and its fan-out, or Redis failed or stalled under it) is finished
by ``NotificationService.sweep`` on any node; the fan-out is idempotent per
notification id, so finishing one twice appends it once.

Clearing waits ``CLEAR_DELAY`` seconds, longer than Redis needs to put the
appends on disk (``appendfsync everysec``: at most ~2 s). A Redis that
crashes and comes back from its append-only file may have lost the last
second of appends, markers included; the notifications behind them are
still pending, and the sweep that follows every Redis reconnect appends
them again.
"""
from __future__ import annotations

import collections
import logging
import time

from store.documents import DocumentStore

log = logging.getLogger(__name__)

CLEAR_DELAY = 3.0  # seconds between a fan-out and clearing its row's flag


class PendingClears:
    """Batches ``pending = False`` writes: one store write per flush, off the hot path.

    Keyed by (notification id, content version): an update in place sets
    ``pending`` again at a new version, and the store clears only rows
    still at the version that was fanned out (``clear_pending_at``), so a
    late clear of an older version never hides a newer pending update.
    """

    def __init__(self, store: DocumentStore, delay: float = CLEAR_DELAY) -> None:
        self._store = store
        self._delay = delay
        self._queue: collections.deque[tuple[float, tuple[str, int]]] = collections.deque()
        self._queued: set[tuple[str, int]] = set()

    def fanned_out(self, notification_id: str, version: int = 1) -> None:
        key = (notification_id, version)
        if key not in self._queued:
            self._queued.add(key)
            self._queue.append((time.monotonic(), key))

    def __contains__(self, key: tuple[str, int]) -> bool:
        """(id, version) fanned out by this node, its flag not cleared yet: nothing left to do for it."""
        return key in self._queued

    async def flush(self, everything: bool = False) -> None:
        """Clear the rows fanned out at least ``delay`` ago (all of them at shutdown)."""
        cutoff = time.monotonic() - (0 if everything else self._delay)
        keys: list[tuple[str, int]] = []
        while self._queue and self._queue[0][0] <= cutoff:
            keys.append(self._queue.popleft()[1])
        if not keys:
            return
        try:
            await self._store.clear_pending_at(keys)
        except Exception:
            # Keep them to retry on the next flush (were they swept meanwhile,
            # that would be harmless too: the fan-out is idempotent).
            self._queue.extendleft((cutoff, k) for k in reversed(keys))
            raise
        self._queued.difference_update(keys)
