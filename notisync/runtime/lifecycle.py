"""The node's life cycle as the handlers and the shutdown see it: one typed object.

Shutdown (``notisync/runtime/server.py``) stops accepting, then waits for the work
already accepted — requests being handled, client frames being processed,
sockets registering or leaving — before it closes Redis and the store.
Handlers count themselves in and out here; nothing is kept under string
keys in Tornado's settings.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Iterator

# Sockets registering or unregistering at once. Each step makes several Redis
# calls; below the Redis pool's size (64), a reconnect storm of thousands of
# sockets queues here, in order, instead of timing out on the pool.
SETUP_CONCURRENCY = 32


class Lifecycle:
    def __init__(self) -> None:
        self.draining = False  # set on SIGTERM: new requests and frames are refused with 503
        self.in_flight = 0  # requests and client frames being handled now
        self.socket_cleanups: set[asyncio.Task[None]] = set()
        self._gate: asyncio.Semaphore | None = None

    @property
    def setup_gate(self) -> asyncio.Semaphore:
        """Bounds concurrent socket set-ups and teardowns (created inside the running loop)."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(SETUP_CONCURRENCY)
        return self._gate

    def begin(self) -> None:
        self.in_flight += 1

    def end(self) -> None:
        self.in_flight -= 1

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        self.begin()
        try:
            yield
        finally:
            self.end()

    def track_cleanup(self, task: asyncio.Task[None]) -> None:
        """A socket's teardown: shutdown waits for it before Redis goes away."""
        self.socket_cleanups.add(task)
        task.add_done_callback(self.socket_cleanups.discard)

    @property
    def idle(self) -> bool:
        return self.in_flight == 0
