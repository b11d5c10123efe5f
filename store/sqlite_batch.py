"""Group commit for the SQLite store: writes that arrive together share one transaction.

Under load most of a write's cost was its own ``BEGIN IMMEDIATE`` /
``COMMIT`` and the hop to the worker thread and back. Here writes queue up
while a batch is running; the next batch runs all of them in one
transaction, each inside its own savepoint, so one write failing (a unique
violation, say) rolls back only itself and only its caller sees the error.
A caller is told "done" only after the transaction holding its write has
committed; if the commit itself fails, every write of the batch fails.
With no load a batch is a single write, as before.

The queueing is plain loop callbacks, not ``store/batching.py``'s task per
batch: a profile at 500 notifications/s (nearly every batch one write) had
the task, its steps and the chain of awaits through it at ~19 µs of loop
CPU per write, the hop to the store thread itself at ~21 µs.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from typing import Any, Callable, TypeVar

from store.sqlite_worker import Worker

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
Waiting = list[tuple[Job, "asyncio.Future[Any]"]]

# Bounds how long one transaction holds the write lock (and the worker).
MAX_BATCH = 256


def run_batch(conn: sqlite3.Connection, jobs: list[Job]) -> list[tuple[bool, Any]]:
    """On the worker thread: every job in one transaction; (ok, result or exception) each."""
    if len(jobs) == 1:
        return [_run_alone(conn, jobs[0])]
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


def _run_alone(conn: sqlite3.Connection, job: Job) -> tuple[bool, Any]:
    """One job in its own transaction: no savepoint needed, its failure rolls back everything.

    Below saturation most batches hold one write; the SAVEPOINT and RELEASE
    were two of its five statements.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        value = job(conn)
    except Exception as exc:  # the caller's error, not the batch's
        conn.execute("ROLLBACK")
        return False, exc
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True, value


class GroupWriter:
    """Queues write jobs on the event loop; runs them on the store thread in batches, one batch at a time.

    A batch starts on the loop turn after its first write, so writes issued
    in the same turn join it; writes arriving while it runs form the next.
    """

    def __init__(self, worker: Worker, conn: sqlite3.Connection, max_batch: int = MAX_BATCH) -> None:
        self._worker, self._conn, self._max_batch = worker, conn, max_batch
        self._queue: Waiting = []
        self._busy = False  # a batch is on the store thread, or about to be sent there
        self._idle: list[asyncio.Future[None]] = []  # drain() callers

    def write(self, job: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((job, future))
        if not self._busy:
            self._busy = True
            loop.call_soon(self._send, loop)
        return future

    async def drain(self) -> None:
        """Wait until every queued write has its outcome."""
        while self._busy:
            waiter = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            await waiter

    def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._queue:
            self._went_idle()
            return
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        jobs = [job for job, _ in batch]
        self._worker.submit(run_batch, (self._conn, jobs), loop, functools.partial(self._done, loop, batch))

    def _done(self, loop: asyncio.AbstractEventLoop, batch: Waiting, ok: bool, value: Any) -> None:
        """On the loop, with the batch's outcome: each caller's own, or the batch's error for all."""
        try:
            if ok:
                for (_, future), (job_ok, result) in zip(batch, value):
                    if future.done():
                        continue  # its caller was cancelled; what it asked for stands
                    if job_ok:
                        future.set_result(result)
                    else:
                        future.set_exception(result)
            else:  # nothing of the batch was committed
                for _, future in batch:
                    if not future.done():
                        future.set_exception(value)
        except Exception:  # pragma: no cover - setting a pending future's outcome does not fail
            log.exception("handing out a write batch's outcomes")
        finally:
            self._send(loop)  # the writes queued meanwhile, if any

    def _went_idle(self) -> None:
        self._busy = False
        waiters, self._idle = self._idle, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
