"""How the long-running commands (``watch``, ``desktop``, ``forward``) stop: SIGINT or SIGTERM."""
from __future__ import annotations

import asyncio
import signal
from typing import Awaitable


async def until_signalled(work: Awaitable[int | None]) -> int:
    """Await ``work`` in this task; SIGINT or SIGTERM cancels it, which is the normal
    way out (Ctrl-C, systemctl stop, logout), so that ends with status 0."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await work or 0
    except asyncio.CancelledError:
        return 0
