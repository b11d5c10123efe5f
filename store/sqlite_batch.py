"""Group commit for the SQLite store: writes that arrive together share one transaction.

Under load most of a write's cost was its own ``BEGIN IMMEDIATE`` /
``COMMIT`` and the hop to the worker thread and back. Here writes queue up
while a batch is running; the next batch runs all of them in one
transaction, each inside its own savepoint, so one write failing (a unique
violation, say) rolls back only itself and only its caller sees the error.
A caller is told "done" only after the transaction holding its write has
committed; if the commit itself fails, every write of the batch fails.
With no load a batch is a single write, as before.
"""
from __future__ import annotations

import asyncio
import functools
import sqlite3
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
Runner = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]

# Bounds how long one transaction holds the write lock (and the worker).
MAX_BATCH = 256


def run_batch(conn: sqlite3.Connection, jobs: list[Job]) -> list[tuple[bool, Any]]:
    """On the worker thread: every job in one transaction; (ok, result or exception) each."""
    results: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for job in jobs:
            conn.execute("SAVEPOINT job")
            try:
                value = job(conn)
            except Exception as exc:  # this job's failure is its caller's, not the batch's
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                results.append((False, exc))
            else:
                conn.execute("RELEASE job")
                results.append((True, value))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


class GroupWriter:
    """Queues write jobs on the event loop and runs them in batches via ``run``."""

    def __init__(self, run: Runner, max_batch: int = MAX_BATCH) -> None:
        self._run = run
        self._max_batch = max_batch
        self._queue: list[tuple[Job, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        if self._task is None:
            # Started on the next loop turn, so writes issued in this one join it.
            self._task = asyncio.create_task(self._flush())
        return await future

    async def drain(self) -> None:
        """Wait until every queued write has been committed or failed."""
        while self._task is not None:
            await asyncio.wait([self._task])

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._run_one(batch)
        finally:
            self._task = None

    async def _run_one(self, batch: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        try:
            results = await self._run(functools.partial(run_batch, jobs=[job for job, _ in batch]))
        except asyncio.CancelledError:  # the loop is going away
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # nothing of this batch was committed
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), (ok, value) in zip(batch, results):
            if future.done():
                continue  # its caller was cancelled; the write itself stands
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
