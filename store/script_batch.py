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

Batches run one at a time, so the batcher keeps one pool connection for
itself and writes each pipeline on it directly: redis-py's ``Pipeline``
object (its command stack, a pool checkout and release, reset, timing
hooks) cost about as much Python per call as the send and the read
themselves (75 against 150 µs per single-call batch, measured alone). The
connection's own retry policy and error handling are kept: a connection
or timeout error disconnects it, and the retry (if any) reconnects, which
on Sentinel finds the current primary. As the pool does at checkout, a
connection the server closed while it sat idle is replaced before use.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from store.batching import Batcher, Outcome

log = logging.getLogger(__name__)

MAX_BATCH = 128

Call = tuple[list[Any], list[Any]]  # keys, args


class ScriptBatcher(Batcher[Call]):
    """``wait_replicas``: end each pipeline with ``WAIT n`` (the same connection, so it
    covers exactly these writes): callers are answered once that many replicas
    have them, or after ``wait_ms`` — then the writes stand on the primary
    alone (asynchronous replication, as without the flag), counted in
    ``unconfirmed`` and logged."""

    def __init__(self, redis: "Redis | RedisCluster", script: AsyncScript, max_batch: int = MAX_BATCH,
                 wait_replicas: int = 0, wait_ms: int = 1000, cluster: bool = False,
                 linger: float = 0.0) -> None:
        super().__init__(max_batch, linger)
        # redis-py refuses EVALSHA in a cluster pipeline (each call may live on
        # another shard): there the calls of a batch go out side by side, each
        # routed by its keys' slot, and WAIT is not offered (a cluster's
        # replicas are per shard; --redis-wait is for Sentinel).
        self._cluster = cluster
        self._redis = redis
        self._script = script
        self._wait = (wait_replicas, wait_ms)
        self.unconfirmed = 0  # pipelines whose WAIT timed out short of wait_replicas
        # Held from the pool between batches; closing the client closes it with the rest.
        self._conn: AbstractConnection | None = None

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        return await self.submit((keys, args))

    async def _run_batch(self, calls: list[Call]) -> list[Outcome]:
        if self._cluster:
            replies = await asyncio.gather(*(self._lone_call(keys, args) for keys, args in calls))
            return [(not isinstance(reply, Exception), reply) for reply in replies]
        # A raised error (the connection failed) means no reply for anyone.
        commands: list[tuple[Any, ...]] = [("EVALSHA", self._script.sha, len(keys), *keys, *args)
                                           for keys, args in calls]
        if self._wait[0]:
            commands.append(("WAIT", *self._wait))
        replies = await self._pipeline(commands)
        if self._wait[0]:
            self._check_wait(replies.pop())
        outcomes: list[Outcome] = []
        for (keys, args), reply in zip(calls, replies):
            if isinstance(reply, NoScriptError):  # Redis restarted or flushed its scripts
                reply = await self._lone_call(keys, args)
            outcomes.append((not isinstance(reply, Exception), reply))
        return outcomes

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One write of every command, then their replies in order (a Redis error reply in its place)."""
        conn = self._conn
        if conn is None:
            conn = self._conn = await self._redis.connection_pool.get_connection()
        elif _closed_by_peer(conn):
            # Closed while idle (Redis restarted, a proxy's idle timeout): what the
            # pool checks at checkout. Nothing was sent on it, so reconnecting is safe.
            await conn.disconnect()

        async def exchange() -> list[Any]:
            await conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # that command's reply, not the connection's failure
                    replies.append(exc)
            return replies

        try:
            return await conn.retry.call_with_retry(exchange, lambda _error: conn.disconnect())
        except BaseException:
            # Replies may be left unread (a timeout, a cancellation): the
            # connection goes back to the pool closed, and the next batch
            # takes a fresh one.
            self._conn = None
            await conn.disconnect()
            await self._redis.connection_pool.release(conn)
            raise

    def _check_wait(self, acked: Any) -> None:
        if isinstance(acked, int) and acked >= self._wait[0]:
            return
        self.unconfirmed += 1
        if self.unconfirmed == 1 or self.unconfirmed % 100 == 0:  # not a line per fan-out while it lasts
            log.warning("WAIT %d: %s replica(s) confirmed within %d ms; these appends rely on async replication"
                        " (%d time(s) so far)", self._wait[0], acked, self._wait[1], self.unconfirmed)

    async def _lone_call(self, keys: list[Any], args: list[Any]) -> Any:
        """The script did not run; this path loads it and runs it once."""
        try:
            return await self._script(keys=keys, args=args)
        except Exception as exc:  # handed to the caller, like any reply
            return exc


def _closed_by_peer(conn: AbstractConnection) -> bool:
    """Whether the server's end of an idle connection is gone (its EOF or reset already arrived).

    The loop hands a connection's end-of-stream to its StreamReader whether
    or not anyone is reading, so this costs no system call (the pool's own
    check, a non-blocking read under a zero timeout, costs one and a timer).
    """
    reader = getattr(conn, "_reader", None)  # redis-py's asyncio connection keeps its StreamReader here
    if not isinstance(reader, asyncio.StreamReader):
        return False  # not connected (the send connects), or a connection of another make
    return reader.at_eof() or reader.exception() is not None
