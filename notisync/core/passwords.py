"""Password hashing behind a concurrency gate: a burst of logins never piles up.

Each hash costs ~45 ms of CPU (argon2id, ``core/auth.py``). Without a bound, a
few dozen logins a second would queue hundreds of them in the thread pool, and
every request behind them (and /health) would wait. Here at most
``concurrency`` hashes run at once, in threads of their own (argon2 releases
the GIL), at most ``queue`` more wait their turn, and anything beyond gets
503 ``busy`` with ``Retry-After`` at once.
"""
from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from notisync.core import auth
from notisync.errors import Unavailable

T = TypeVar("T")

QUEUE_FACTOR = 4  # waiting hashes allowed per running one


def default_concurrency() -> int:
    return 2 * (os.cpu_count() or 1)


class Passwords:
    def __init__(self, concurrency: int = 0) -> None:
        self.concurrency = concurrency or default_concurrency()
        self.queue = QUEUE_FACTOR * self.concurrency
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="password-hash")
        self._admitted = 0  # running + waiting

    async def hash(self, password: str) -> str:
        return await self._run(auth.hash_password, password)

    async def verify(self, password: str, stored: str) -> bool:
        return await self._run(auth.verify_password, password, stored)

    @staticmethod
    def needs_rehash(stored: str) -> bool:
        return auth.needs_rehash(stored)

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        if self._admitted >= self.concurrency + self.queue:
            raise Unavailable("the server is busy checking passwords; retry shortly", code="busy", retry_after=1)
        self._admitted += 1
        try:
            # The pool has ``concurrency`` threads: the rest wait in its queue, in order.
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._admitted -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
