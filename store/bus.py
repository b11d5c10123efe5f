"""Pub/sub between nodes: one dedicated Redis connection per node.

A node subscribes to a user's channel only while it holds a socket of that
user, so its work grows with its own recipients, not with cluster traffic.
``subscribe`` returns only after Redis confirmed the subscription: the sync
layer reads a device's stream after that point, so nothing published in
between can be missed.

Every publication is ``<header JSON>\\n<body>``: a small header the node
parses, and an already-encoded body it writes to sockets untouched.

When the connection drops, the listen loop reconnects with backoff,
re-subscribes everything and calls ``on_reconnect`` so the sync layer can
re-read streams for whatever was published while it was away.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
from typing import Any, Awaitable, Callable

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection, ConnectionPool
from redis.exceptions import RedisError

from store.keys import Keys

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, dict[str, Any], bytes], None]
ReconnectHandler = Callable[[], Awaitable[None]]
# Longer than any stall after which a buffered script could still run
# unnoticed: past ~a minute the bus connection itself has broken and the
# reconnect re-reads every stream anyway.
ECHO_WATCH_SECONDS = 120.0


class Bus:
    def __init__(
        self,
        url: str | None,
        redis: "Redis | RedisCluster",
        keys: Keys,
        node_id: str,
        client_name: str | None = None,
        pool: ConnectionPool | None = None,
    ) -> None:
        # No read timeout on this connection: it idles until something is
        # published. ``pool`` instead of ``url``: e.g. one that asks Redis
        # Sentinel for the primary on every connect.
        self._pool = pool or (ConnectionPool.from_url(url, socket_timeout=None, socket_connect_timeout=5,
                                                      client_name=client_name) if url else None)
        self._client_name = client_name
        self._redis = redis
        self._keys = keys
        self.node_id = node_id
        # How this node's publications start: the header's first field, as
        # publish() and the fan-out script (store/streams.py) both write it.
        self._own_prefix = b'{"n":"' + node_id.encode() + b'"'
        self._on_message: MessageHandler | None = None
        self._on_reconnect: ReconnectHandler | None = None
        self._conn: Connection | None = None
        self._refs: collections.Counter[str] = collections.Counter()
        self._pending: dict[bytes, collections.deque[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._stopping = False
        self._resync: asyncio.Task[None] | None = None
        # user id -> until when (loop time) this node's own publications for
        # that user are handled too (see expect_own_echo).
        self._echo_until: dict[str, float] = {}

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        """Connect and listen: ``on_message(user id, header, body)`` for every other node's
        publication; ``on_reconnect()`` after the connection came back."""
        self._on_message, self._on_reconnect = on_message, on_reconnect
        await self._connect()
        self._task = asyncio.create_task(self._run(), name="bus-listener")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._disconnect()
        if self._pool is not None:
            await self._pool.aclose()

    async def publish(self, user_id: str, header: dict[str, Any], body: bytes = b"") -> None:
        await self._redis.publish(self._keys.user_channel(user_id), self._encode(header, body))

    def _encode(self, header: dict[str, Any], body: bytes) -> bytes:
        return json.dumps({"n": self.node_id, **header}, separators=(",", ":")).encode() + b"\n" + body

    def expect_own_echo(self, user_id: str, seconds: float = ECHO_WATCH_SECONDS) -> None:
        """Handle this node's own publications for the user for a while.

        Normally they are skipped: the node delivered locally when its script
        returned. A script whose reply never came (a timeout, a dropped
        connection) may still run later, and then its publication is the only
        wake-up this node's sockets get. Handling a publication twice is safe:
        the sync layer drops entries at or below a socket's position.
        """
        self._echo_until[user_id] = asyncio.get_running_loop().time() + seconds

    async def subscribe(self, user_id: str) -> None:
        """Hold a subscription to the user's channel; waits for Redis to confirm."""
        self._refs[user_id] += 1
        if self._refs[user_id] == 1:
            await self._send_subscribe(self._keys.user_channel(user_id))

    async def unsubscribe(self, user_id: str) -> None:
        self._refs[user_id] -= 1
        if self._refs[user_id] > 0:
            return
        del self._refs[user_id]
        if self._conn is not None:
            try:
                await self._conn.send_command("UNSUBSCRIBE", self._keys.user_channel(user_id))
            except (RedisError, OSError) as exc:
                log.warning("unsubscribe failed (%s); the reconnect will drop it", exc)

    async def _send_subscribe(self, channel: str) -> None:
        conn = self._conn
        if conn is None or not self.connected:
            # The reconnect loop subscribes every held channel and then
            # re-syncs every socket, so nothing is lost by not waiting here.
            return
        waiter = asyncio.get_running_loop().create_future()
        self._pending.setdefault(channel.encode(), collections.deque()).append(waiter)
        await conn.send_command("SUBSCRIBE", channel)
        await asyncio.wait_for(waiter, timeout=10)

    async def _connect(self) -> set[str]:
        """Connect and subscribe every held channel; returns the users subscribed."""
        if self._pool is None:
            raise ConnectionError("this bus was built without a Redis URL or pool")
        conn = self._pool.make_connection()
        await conn.connect()
        users = set(self._refs)
        channels = self._held_channels()
        # A node-wide channel keeps the connection in subscribed mode even
        # with no user subscribed, so its replies are always pub/sub frames.
        await conn.send_command("SUBSCRIBE", self._keys.node_channel(self.node_id), *channels)
        for _ in range(len(channels) + 1):
            await self._read(conn)
        self._conn = conn
        self._connected.set()
        return users

    async def _after_reconnect(self, subscribed: set[str]) -> None:
        """Subscribe what the reconnect missed, then let the sync layer re-read every stream.

        A socket that arrived while the connection was being made found the
        bus down and left its channel to the reconnect, which had already
        listed what to subscribe: its channel is subscribed here, before the
        re-sync reads the streams (so nothing appended after that read goes
        unseen).
        """
        for user_id in [u for u in self._refs if u not in subscribed]:
            try:
                await self._send_subscribe(self._keys.user_channel(user_id))
            except (RedisError, OSError, ConnectionError, asyncio.TimeoutError) as exc:
                log.warning("subscribe after reconnect failed (%s); the next reconnect retries it", exc)
        if self._on_reconnect is not None:
            await self._on_reconnect()

    def _held_channels(self) -> list[str]:
        return [self._keys.user_channel(u) for u in self._refs]

    async def _disconnect(self) -> None:
        self._connected.clear()
        conn, self._conn = self._conn, None
        for waiters in self._pending.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(ConnectionError("bus disconnected"))
        self._pending.clear()
        if conn is not None:
            await conn.disconnect()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ConnectionError) as exc:
                log.warning("pub/sub connection lost: %s", exc)
            await self._disconnect()
            await self._reconnect_with_backoff()

    async def _listen(self) -> None:
        conn = self._conn
        if conn is None:  # dropped between connecting and listening: _run reconnects
            raise ConnectionError("bus disconnected")
        while True:
            reply = await self._read(conn)
            kind = reply[0]
            if kind == b"message":
                self._dispatch(reply[1], reply[2])
            elif kind == b"subscribe":
                waiters = self._pending.get(reply[1])
                if waiters:
                    waiters.popleft().set_result(None)

    @staticmethod
    async def _read(conn: Connection) -> Any:
        # push_request: take pub/sub frames as replies, not as out-of-band
        # pushes; math.inf: an idle channel is not a timeout.
        return await conn.read_response(timeout=math.inf, push_request=True)

    def _dispatch(self, channel: bytes, payload: bytes) -> None:
        # Every fan-out this node makes comes back here (it is subscribed to
        # the user's channel); skip its own by the header's first bytes, with
        # no JSON parse, unless some echo is being watched for.
        if payload.startswith(self._own_prefix) and not self._watching_echoes():
            return
        head, _, body = payload.partition(b"\n")
        try:
            header = json.loads(head)
            user_id = self._keys.user_from_channel(channel.decode())
            if header.get("n") == self.node_id and not self._own_echo_wanted(user_id):
                return  # this node already delivered it locally
            if self._on_message is not None:
                self._on_message(user_id, header, body)
        except Exception:  # a bad message must not stop the listener
            log.exception("could not handle a pub/sub message on %r", channel)

    def _watching_echoes(self) -> bool:
        """Is any user's own echo still wanted? (Forgets the watches that ran out.)"""
        if self._echo_until:
            now = asyncio.get_running_loop().time()
            for user_id in [u for u, until in self._echo_until.items() if until <= now]:
                del self._echo_until[user_id]
        return bool(self._echo_until)

    def _own_echo_wanted(self, user_id: str) -> bool:
        until = self._echo_until.get(user_id)
        if until is None:
            return False
        if asyncio.get_running_loop().time() < until:
            return True
        del self._echo_until[user_id]
        return False

    async def _reconnect_with_backoff(self) -> None:
        delay = 0.05
        loop = asyncio.get_running_loop()
        next_warning = loop.time()
        while not self._stopping:
            try:
                subscribed = await self._connect()
                log.info("pub/sub reconnected; re-syncing local sockets")
                # Run beside the listener: the re-sync may wait on Redis while
                # new sockets wait on subscription confirmations.
                self._resync = asyncio.create_task(self._after_reconnect(subscribed))
                return
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ConnectionError) as exc:
                if loop.time() >= next_warning:  # at once, then every 10 s while it lasts
                    log.warning("pub/sub reconnect failed, retrying: %s", exc)
                    next_warning = loop.time() + 10.0
                await self._disconnect()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
