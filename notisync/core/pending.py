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
    """Batches ``pending = False`` writes: one store write per flush, off the hot path."""

    def __init__(self, store: DocumentStore, delay: float = CLEAR_DELAY) -> None:
        self._store = store
        self._delay = delay
        self._queue: collections.deque[tuple[float, str]] = collections.deque()
        self._queued: set[str] = set()

    def fanned_out(self, notification_id: str) -> None:
        if notification_id not in self._queued:
            self._queued.add(notification_id)
            self._queue.append((time.monotonic(), notification_id))

    def __contains__(self, notification_id: str) -> bool:
        """Fanned out by this node, its flag not cleared yet: nothing left to do for it."""
        return notification_id in self._queued

    async def flush(self, everything: bool = False) -> None:
        """Clear the rows fanned out at least ``delay`` ago (all of them at shutdown)."""
        cutoff = time.monotonic() - (0 if everything else self._delay)
        ids: list[str] = []
        while self._queue and self._queue[0][0] <= cutoff:
            ids.append(self._queue.popleft()[1])
        if not ids:
            return
        try:
            await self._store.clear_pending(ids)
        except Exception:
            # Keep them to retry on the next flush (were they swept meanwhile,
            # that would be harmless too: the fan-out is idempotent).
            self._queue.extendleft((cutoff, i) for i in reversed(ids))
            raise
        self._queued.difference_update(ids)
