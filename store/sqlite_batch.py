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

import functools
import sqlite3
from typing import Any, Awaitable, Callable, TypeVar

from store.batching import Batcher, Outcome

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
Runner = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]

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


class GroupWriter(Batcher[Job]):
    """Queues write jobs on the event loop and runs them in batches via ``run``."""

    def __init__(self, run: Runner, max_batch: int = MAX_BATCH, linger: float = 0.0) -> None:
        super().__init__(max_batch, linger)
        self._run = run

    async def write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        return await self.submit(job)  # type: ignore[no-any-return]

    async def _run_batch(self, jobs: list[Job]) -> list[Outcome]:
        # A raised error means nothing of the batch was committed.
        return await self._run(functools.partial(run_batch, jobs=jobs))  # type: ignore[no-any-return]
