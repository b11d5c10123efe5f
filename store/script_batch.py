"""Calls of one Lua script issued together go to Redis as one pipeline.

Under load many fan-outs are in flight at once, and each paid redis-py's
full per-command path: a pool checkout, its own write and read, a timeout
timer. Calls queued while a pipeline is out are sent together as the next
one (one write, one read), and each caller still gets its own reply or
error. Unloaded, a pipeline holds a single call, as before.

Each script call is atomic in Redis on its own; the pipeline adds no
atomicity and needs none. A reply lost to a dropped connection fails every
call of that pipeline (redis-py's retry may re-run them, exactly as it
would re-run a lone EVALSHA).
"""
from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

MAX_BATCH = 128

Call = tuple[list[Any], list[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    def __init__(self, redis: Redis, script: AsyncScript, max_batch: int = MAX_BATCH) -> None:
        self._redis = redis
        self._script = script
        self._max_batch = max_batch
        self._queue: list[Call] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future))
        if self._task is None:
            # Started on the next loop turn, so calls made in this one join it.
            self._task = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._send(batch)
        finally:
            self._task = None

    async def _send(self, batch: list[Call]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args, _ in batch:
                    pipe.evalsha(self._script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the connection failed: no reply for anyone
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (keys, args, future), reply in zip(batch, replies):
            if isinstance(reply, NoScriptError):  # Redis restarted or flushed its scripts
                reply = await self._lone_call(keys, args)
            if future.done():
                continue  # its caller was cancelled
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _lone_call(self, keys: list[Any], args: list[Any]) -> Any:
        """The script did not run; this path loads it and runs it once."""
        try:
            return await self._script(keys=keys, args=args)
        except Exception as exc:  # handed to the caller, like any reply
            return exc
