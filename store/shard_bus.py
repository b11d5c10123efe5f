"""Pub/sub between nodes on a Redis Cluster: each user's channel is a shard channel.

A user's wake-up channel carries the user's hash tag (``store/keys.py``), so
it lives in the same slot as the user's streams: the fan-out script
publishes it with ``SPUBLISH`` on the shard that ran the script, and Redis
sends it only to that shard's subscribers, not to every node of the
cluster as plain ``PUBLISH`` would. A node therefore holds one subscribed
connection per primary that owns a slot of one of its users.

The promise is the one ``store/bus.py`` makes: ``subscribe`` returns once
the owning primary confirmed, and after anything that may have lost
publications, every held channel is subscribed again on its current owner
and ``on_reconnect`` re-reads every stream. Two things lose them here: a
shard's connection breaking (the primary died; Cluster promotes its replica)
and a slot moving (resharding), which Redis announces by a ``sunsubscribe``
this node did not ask for. Either way the node drops every shard
connection, re-reads the slot map and subscribes afresh: rare events, so the
simple whole-bus recovery is worth more than finesse.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError

from store.bus import Bus, MessageHandler, ReconnectHandler
from store.keys import Keys

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT = 10.0


@dataclass
class _Shard:
    name: str
    conn: Connection
    channels: set[bytes] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class ShardedBus(Bus):
    def __init__(self, cluster: RedisCluster, keys: Keys, node_id: str, client_name: str | None = None) -> None:
        super().__init__(None, cluster, keys, node_id, client_name=client_name)
        self._cluster = cluster
        self._shards: dict[str, _Shard] = {}
        self._opening: dict[str, asyncio.Task[_Shard]] = {}
        self._owner: dict[bytes, str] = {}  # channel -> the shard it is subscribed on
        self._unsubscribing: collections.Counter[bytes] = collections.Counter()
        self._recovery: asyncio.Task[None] | None = None
        self._recover_again = False

    async def start(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        self._on_message, self._on_reconnect = on_message, on_reconnect
        await self._cluster.initialize()
        self._connected.set()  # no shard connection until the first subscription

    async def stop(self) -> None:
        self._stopping = True
        for task in [self._recovery, self._resync]:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._close_shards()

    async def publish(self, user_id: str, header: dict[str, Any], body: bytes = b"") -> None:
        await self._cluster.spublish(self._keys.user_channel(user_id), self._encode(header, body))

    async def unsubscribe(self, user_id: str) -> None:
        self._refs[user_id] -= 1
        if self._refs[user_id] > 0:
            return
        del self._refs[user_id]
        channel = self._keys.user_channel(user_id).encode()
        shard = self._shards.get(self._owner.pop(channel, ""))
        if shard is None:
            return
        shard.channels.discard(channel)
        self._unsubscribing[channel] += 1  # its sunsubscribe reply is ours, not a slot move
        try:
            await shard.conn.send_command("SUNSUBSCRIBE", channel)
        except (RedisError, OSError) as exc:
            self._unsubscribing[channel] -= 1
            log.warning("sunsubscribe failed (%s); the recovery will drop it", exc)

    async def _send_subscribe(self, channel: str) -> None:
        if not self.connected:
            return  # the recovery subscribes every held channel, then re-syncs every socket
        waiter = await self._ssubscribe(channel.encode())
        await asyncio.wait_for(waiter, timeout=SUBSCRIBE_TIMEOUT)

    async def _ssubscribe(self, channel: bytes) -> asyncio.Future[None]:
        """Send SSUBSCRIBE to the channel's owner; the future resolves on its confirmation."""
        node = self._cluster.get_node_from_key(channel)
        shard = await self._shard(node)
        waiter = asyncio.get_running_loop().create_future()
        self._pending.setdefault(channel, collections.deque()).append(waiter)
        self._owner[channel] = shard.name
        shard.channels.add(channel)
        await shard.conn.send_command("SSUBSCRIBE", channel)
        return waiter

    async def _shard(self, node: ClusterNode) -> _Shard:
        """The subscribed connection to ``node``, opened (once, however many ask at a time) if needed."""
        shard = self._shards.get(node.name)
        if shard is not None:
            return shard
        opening = self._opening.get(node.name)
        if opening is None:
            opening = self._opening[node.name] = asyncio.create_task(self._open(node))
            opening.add_done_callback(lambda _: self._opening.pop(node.name, None))
        return await asyncio.shield(opening)

    async def _open(self, node: ClusterNode) -> _Shard:
        conn = Connection(host=node.host, port=node.port, socket_timeout=None, socket_connect_timeout=5,
                          client_name=self._client_name)
        await conn.connect()
        shard = self._shards[node.name] = _Shard(node.name, conn)
        shard.task = asyncio.create_task(self._listen_shard(shard), name=f"bus-shard-{node.name}")
        return shard

    async def _listen_shard(self, shard: _Shard) -> None:
        try:
            while True:
                reply = await shard.conn.read_response(timeout=math.inf, push_request=True)
                kind, channel = reply[0], reply[1]
                if kind == b"smessage":
                    self._dispatch(channel, reply[2])
                elif kind == b"ssubscribe":
                    waiters = self._pending.get(channel)
                    if waiters:
                        waiters.popleft().set_result(None)
                elif kind == b"sunsubscribe":
                    if self._unsubscribing[channel] > 0:
                        self._unsubscribing[channel] -= 1
                        if not self._unsubscribing[channel]:
                            del self._unsubscribing[channel]
                    elif channel in shard.channels:
                        log.warning("slot of %r moved away from %s; re-subscribing", channel, shard.name)
                        self._recover()
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError, ConnectionError, IndexError, TypeError) as exc:
            if not self._stopping:
                log.warning("sharded pub/sub connection to %s lost: %s", shard.name, exc)
                self._fail_waiters(shard)
                self._recover()

    def _fail_waiters(self, shard: _Shard) -> None:
        for channel in shard.channels:
            for waiter in self._pending.pop(channel, ()):
                if not waiter.done():
                    waiter.set_exception(ConnectionError("bus shard disconnected"))

    def _recover(self) -> None:
        """Re-subscribe everything on the current owners, then re-sync (at most one recovery at a time)."""
        if self._stopping:
            return
        self._connected.clear()
        if self._recovery is not None and not self._recovery.done():
            self._recover_again = True
            return
        self._recovery = asyncio.create_task(self._recover_loop(), name="bus-recovery")

    async def _recover_loop(self) -> None:
        delay = 0.05
        loop = asyncio.get_running_loop()
        next_warning = loop.time()
        while not self._stopping:
            self._recover_again = False
            await self._close_shards()
            try:
                await self._cluster.nodes_manager.initialize()  # the slot map as it is now
                users = set(self._refs)
                waiters = [await self._ssubscribe(self._keys.user_channel(u).encode()) for u in users]
                await asyncio.wait_for(asyncio.gather(*waiters), timeout=SUBSCRIBE_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ConnectionError, asyncio.TimeoutError) as exc:
                if loop.time() >= next_warning:  # at once, then every 10 s while it lasts
                    log.warning("sharded pub/sub recovery failed, retrying: %s", exc)
                    next_warning = loop.time() + 10.0
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if self._recover_again:
                continue
            self._connected.set()
            log.info("sharded pub/sub re-subscribed on %d shard(s); re-syncing local sockets", len(self._shards))
            self._resync = asyncio.create_task(self._after_reconnect(users))
            return

    async def _close_shards(self) -> None:
        shards, self._shards = list(self._shards.values()), {}
        self._owner.clear()
        self._unsubscribing.clear()
        for shard in shards:
            self._fail_waiters(shard)
            if shard.task is not None and shard.task is not asyncio.current_task():
                shard.task.cancel()
                await asyncio.gather(shard.task, return_exceptions=True)
            await shard.conn.disconnect()
