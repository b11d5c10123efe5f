"""Calls queued during one loop turn run together, as one batch, one batch at a time.

The shared part of the SQLite group commit (``sqlite_batch``) and the Redis
script pipeline (``script_batch``): each caller awaits its own future; a
batch starts on the next loop turn, so calls issued in this one join it;
while a batch runs, new calls queue for the next.

A batcher given a ``linger`` lets a new batch wait that long for company,
but only under load: when the call that opens it came less than ``BUSY``
after the one before. Then the next call is likely within the linger, and
one batch for two calls halves what each pays for its round trip (a wake-up
of the SQLite thread and a commit; a Redis round trip and a wake-up of
redis-server). A call after a quiet spell runs at once. Batches that fill
while one runs (saturation) never wait: the linger only delays a batch
that would otherwise start alone. (PostgreSQL's ``commit_delay`` with
``commit_siblings``, Kafka's ``linger.ms``: the same trade.)
"""
from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

P = TypeVar("P")
Outcome = tuple[bool, Any]  # (True, result) or (False, the exception for that caller)

# A call less than this long after the previous one means the batcher is busy
# (100 calls/s or more): its next batch may linger.
BUSY = 0.010


class Batcher(Generic[P]):
    def __init__(self, max_batch: int, linger: float = 0.0, busy: float = BUSY) -> None:
        self._max_batch = max_batch
        self._linger = max(0.0, linger)
        self._busy = busy
        self._queue: list[tuple[P, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._last_call = float("-inf")  # loop time of the latest submit

    async def submit(self, payload: P) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((payload, future))
        now = loop.time()
        if self._task is None:
            busy = self._linger and now - self._last_call < self._busy
            self._task = asyncio.create_task(self._flush(self._linger if busy else 0.0))
        self._last_call = now
        return await future

    async def drain(self) -> None:
        """Wait until every queued call has its outcome."""
        while self._task is not None:
            await asyncio.wait([self._task])

    async def _run_batch(self, payloads: list[P]) -> list[Outcome]:
        """One outcome per payload, in order; raising fails the whole batch."""
        raise NotImplementedError

    async def _flush(self, linger: float) -> None:
        try:
            if linger:
                await self._wait_for_company(linger)
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._run_one(batch)
        finally:
            self._task = None

    async def _wait_for_company(self, linger: float) -> None:
        try:
            await asyncio.sleep(linger)
        except asyncio.CancelledError:  # the loop is going away: nobody will run what waits
            for _, future in self._queue:
                future.cancel()
            self._queue.clear()
            raise

    async def _run_one(self, batch: list[tuple[P, asyncio.Future[Any]]]) -> None:
        try:
            outcomes = await self._run_batch([payload for payload, _ in batch])
        except asyncio.CancelledError:  # the loop is going away
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # nobody in this batch got a result
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), (ok, value) in zip(batch, outcomes):
            if future.done():
                continue  # its caller was cancelled; what it asked for stands
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
