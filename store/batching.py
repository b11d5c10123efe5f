"""Calls queued during one loop turn run together, as one batch, one batch at a time.

The shared part of the SQLite group commit (``sqlite_batch``) and the Redis
script pipeline (``script_batch``): each caller awaits its own future; a
batch starts on the next loop turn, so calls issued in this one join it;
while a batch runs, new calls queue for the next.
"""
from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

P = TypeVar("P")
Outcome = tuple[bool, Any]  # (True, result) or (False, the exception for that caller)


class Batcher(Generic[P]):
    def __init__(self, max_batch: int) -> None:
        self._max_batch = max_batch
        self._queue: list[tuple[P, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, payload: P) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((payload, future))
        if self._task is None:
            self._task = asyncio.create_task(self._flush())
        return await future

    async def drain(self) -> None:
        """Wait until every queued call has its outcome."""
        while self._task is not None:
            await asyncio.wait([self._task])

    async def _run_batch(self, payloads: list[P]) -> list[Outcome]:
        """One outcome per payload, in order; raising fails the whole batch."""
        raise NotImplementedError

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._run_one(batch)
        finally:
            self._task = None

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
