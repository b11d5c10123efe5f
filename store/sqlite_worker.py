"""The SQLite store's one thread: every call on its connection runs here, in order.

It replaces a one-thread ``ThreadPoolExecutor`` and ``run_in_executor``,
which a profile at 500 notifications/s showed costing about as much as the
insert itself: per call a ``concurrent.futures.Future``, a work item, the
executor's idle semaphore, an asyncio future chained to the first one
(two callbacks and a lock), and a wake-up of the loop. Here a call is one
``SimpleQueue.put`` of (function, asyncio future); the thread runs what is
queued, and hands every outcome it has back in ONE
``call_soon_threadsafe``, so calls that queued together wake the loop once.

Semantics are the executor's: calls run one at a time in submission order
on one connection; a caller gets the function's result or its exception; a
caller cancelled meanwhile finds its call run all the same (as with
``run_in_executor``), and the outcome is dropped.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")
Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
_STOP = None


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """On the loop: give each caller its outcome (unless it stopped waiting)."""
    for future, ok, value in outcomes:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class Worker:
    def __init__(self, name: str = "sqlite-store") -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``fn(*args)`` for the thread; the future resolves on the calling loop."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((fn, args, future))
        return future

    def stop(self) -> None:
        """Run what is queued, then end the thread (blocks until it has)."""
        self._jobs.put(_STOP)
        self._thread.join()

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            # Everything already queued runs before the loop hears back:
            # one wake-up for the lot instead of one per call.
            batch: list[Job] = []
            while job is not None:
                batch.append(job)
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
            else:
                if batch:
                    self._report(batch)
                return  # _STOP: later puts are a caller bug (the store is closed)
            self._report(batch)

    @staticmethod
    def _report(batch: list[Job]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        for fn, args, future in batch:
            try:
                outcomes.append((future, True, fn(*args)))
            except BaseException as exc:  # the caller's to handle, as with run_in_executor
                outcomes.append((future, False, exc))
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for outcome in outcomes:  # one loop in practice; a store used from two still works
            by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
        for loop, mine in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, mine)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

