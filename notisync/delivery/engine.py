"""Getting each device's stream onto its sockets: connect, replay, live, leave.

Why nothing is lost (the order of steps below is the proof):

1. A socket is indexed in the hub in "pumping" mode before anything else, so
   a wake-up that arrives while it is catching up only marks it dirty.
2. The node subscribes to the user's channel and waits for Redis to confirm.
   Every entry appended after that point produces a wake-up this node sees.
3. The socket then reads its device's stream after its cursor, in batches,
   until a read comes back short and no wake-up arrived meanwhile. Entries
   appended before step 2 are in the stream; entries after it woke us.
4. Live: a wake-up carries (previous id, new id) per device. If the socket's
   cursor is the previous id, the frame is the next one and is written
   straight from the wake-up; an id at or below the cursor is a duplicate;
   anything else is a gap, and the socket goes back to step 3.

Each stream entry names its predecessor, so step 3 also notices entries
trimmed away (more than 1000 behind, or older than 7 days) and tells the
client ``sync_required`` instead of skipping silently. If Redis loses its
data, its epoch changes, and every socket is told ``sync_required`` and
restarts from the new streams.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from notisync import protocol
from notisync.errors import BadRequest
from notisync.delivery.hub import Connection, Hub
from notisync.delivery.recipients import Recipients
from store.bus import Bus
from store.documents import Record
from store.presence import Presence
from store.streams import ZERO, Streams, is_stream_id, parse_id

log = logging.getLogger(__name__)

BATCH = 500
PROBE_INTERVAL = 1.0  # seconds: at most one position probe per socket per interval


@dataclass(slots=True)  # one per socket
class StreamState:
    """Per-socket position in its device's stream."""

    cursor: str = ZERO  # the newest entry queued for this socket
    pumping: bool = True
    dirty: bool = False
    saved: str = ZERO
    # The newest entry the client is known to hold: by its pong to a probe
    # sent behind the entry, or by its own stream_ack. Only this is saved.
    confirmed: str = ZERO
    probe_at: str | None = None  # position of the probe awaiting its pong
    probe_token: bytes = b""
    probed: float = 0.0  # loop time the last probe was sent
    acking: bool = False  # the client sends stream_ack: pongs no longer count
    # Cursor from before frames still queued in the socket's outbox (not yet
    # handed to its stream); None when nothing waits. See handlers/outbox.py.
    unsent: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Delivery:
    def __init__(
        self, hub: Hub, streams: Streams, presence: Presence, node_id: str, recipients: Recipients
    ) -> None:
        self.hub = hub
        self.streams = streams
        self.presence = presence
        self.recipients = recipients
        self.node_id = node_id
        self.bus: Bus | None = None  # set by the service wiring (the bus calls back into us)
        self.epoch = ""
        self._resync_lock = asyncio.Lock()
        self._probes = 0

    async def start(self) -> None:
        self.epoch = await self.streams.ensure_epoch()

    # -- connect / disconnect ---------------------------------------------
    async def connect(self, conn: Connection, device: Record, last_id: str | None) -> None:
        state: StreamState = conn.sync  # type: ignore[attr-defined]
        state.pumping = True
        self.hub.add(conn)
        assert self.bus is not None
        await self.bus.subscribe(conn.user_id)
        if await self.presence.add(conn.user_id, conn.device_id, self._member(conn)):
            await self.publish_status(conn.user_id, conn.device_id, "online")
        state.cursor = await self._start_cursor(conn, device, last_id)
        # The stored position, or the client's own last_id: held by the client.
        state.confirmed = state.cursor
        state.saved = state.cursor if last_id is None else ZERO
        await self._pump(conn)

    async def disconnect(self, conn: Connection, subscribed: bool) -> None:
        state: StreamState = conn.sync  # type: ignore[attr-defined]
        self.hub.remove(conn)
        if state.task and not state.task.done():
            state.task.cancel()
        if subscribed and self.bus is not None:
            await self.bus.unsubscribe(conn.user_id)
        if await self.presence.remove(conn.user_id, conn.device_id, self._member(conn)):
            await self.publish_status(conn.user_id, conn.device_id, "offline")
        if state.confirmed != state.saved:
            await self.streams.save_cursors(self.epoch, {conn.device_id: state.confirmed})

    def _member(self, conn: Connection) -> str:
        return self.presence.member(conn.device_id, self.node_id, conn.conn_id)

    async def _start_cursor(self, conn: Connection, device: Record, last_id: str | None) -> str:
        if last_id == "0":
            # "I hold nothing yet": everything retained, exactly, no matter
            # what earlier sockets of this device were written.
            return self._from_start(conn, device)
        if last_id is not None:
            epoch, sep, stream_id = last_id.partition(":")
            if not sep or not is_stream_id(stream_id):
                return await self._restart(conn, "unknown_last_id", at_end=True)
            if epoch != self.epoch:
                return await self._restart(conn, "stream_reset", at_end=False)
            if parse_id(stream_id) > parse_id(await self.streams.last_id(conn.device_id)):
                return await self._restart(conn, "unknown_last_id", at_end=True)
            return stream_id
        stored = await self.streams.load_cursor(conn.device_id)
        return stored if stored is not None else self._from_start(conn, device)

    def _from_start(self, conn: Connection, device: Record) -> str:
        # A device older than this epoch had its queue in a Redis that lost
        # its data: what it missed is gone, so it must refetch.
        if device["created_at"].timestamp() * 1000 < int(self.epoch):
            self._send_sync_required(conn, "stream_reset")
        return ZERO

    async def _restart(self, conn: Connection, reason: str, at_end: bool) -> str:
        self._send_sync_required(conn, reason)
        return await self.streams.last_id(conn.device_id) if at_end else ZERO

    def _send_sync_required(self, conn: Connection, reason: str) -> None:
        conn.send(protocol.frame(protocol.SYNC_REQUIRED, {"reason": reason}))

    # -- replay ----------------------------------------------------------------
    async def _pump(self, conn: Connection) -> None:
        """Write the stream after the socket's cursor until caught up (step 3)."""
        state: StreamState = conn.sync  # type: ignore[attr-defined]
        state.pumping = True
        try:
            while True:
                state.dirty = False
                result = await self.streams.read_after(conn.device_id, state.cursor, BATCH)
                entries = result.entries
                trimmed = entries[0].prev != state.cursor if entries else (
                    parse_id(result.last) > parse_id(state.cursor)
                )
                if trimmed:
                    self._send_sync_required(conn, "history_trimmed")
                    state.cursor = result.last if not entries else state.cursor
                for entry in entries:
                    if not conn.send(protocol.with_id(entry.body, f"{self.epoch}:{entry.id}")):
                        return  # socket gone: its next connection resumes from its cursor
                    state.cursor = entry.id
                if len(entries) < BATCH and not state.dirty:
                    return
        finally:
            state.pumping = False

    def _start_pump(self, conn: Connection) -> None:
        state: StreamState = conn.sync  # type: ignore[attr-defined]
        if state.pumping:
            state.dirty = True
            return
        state.pumping = True
        state.task = asyncio.create_task(self._pump_logged(conn))

    async def _pump_logged(self, conn: Connection) -> None:
        try:
            await self._pump(conn)
        except (RedisError, OSError) as exc:
            # The next wake-up or the bus's reconnect re-syncs this socket.
            log.warning("replay for a socket failed: %s", exc)

    # -- live ------------------------------------------------------------------
    def deliver(self, user_id: str, entries: dict[str, tuple[str, str]], body: bytes) -> None:
        """Wake-up for stream entries just appended (step 4)."""
        devices = self.hub.user_devices(user_id)
        for device_id, (prev, new) in entries.items():
            conns = devices.get(device_id)
            if not conns:
                continue
            framed: bytes | None = None
            for conn in list(conns):
                state: StreamState = conn.sync  # type: ignore[attr-defined]
                if state.pumping:
                    state.dirty = True
                elif state.cursor == prev:
                    framed = framed or protocol.with_id(body, f"{self.epoch}:{new}")
                    conn.send(framed)
                    state.cursor = new
                elif parse_id(new) > parse_id(state.cursor):
                    self._start_pump(conn)

    def on_bus_message(self, user_id: str, header: dict[str, Any], body: bytes) -> None:
        kind = header.get("k")
        if kind == "m":
            self.deliver(user_id, {d: (p, i) for d, (p, i) in header["e"].items()}, body)
        elif kind == "st":
            self.hub.broadcast(self.hub.user_connections(user_id, exclude_device=header["d"]), body)
        elif kind == "rv":
            self.close_device(user_id, header["d"])

    def expect_own_echo(self, user_id: str) -> None:
        """A fan-out's reply was lost: take this node's own wake-ups for the user too."""
        if self.bus is not None:
            self.bus.expect_own_echo(user_id)

    def close_device(self, user_id: str, device_id: str) -> None:
        for conn in self.hub.device_connections(user_id, device_id):
            conn.close(protocol.CLOSE_POLICY, "device revoked")

    async def publish_status(self, user_id: str, device_id: str, status: str) -> None:
        """device_status to the user's other devices: live only, never queued."""
        body = protocol.frame(protocol.DEVICE_STATUS, {"device_id": device_id, "status": status})
        self.hub.broadcast(self.hub.user_connections(user_id, exclude_device=device_id), body)
        assert self.bus is not None
        await self.bus.publish(user_id, {"k": "st", "d": device_id}, body)

    # -- recovery and housekeeping ---------------------------------------------
    async def resync_all(self) -> None:
        """After Redis came back: adopt its epoch, re-register, re-read every stream."""
        async with self._resync_lock:
            # Device-list versions may have restarted with Redis's data, and
            # whatever bumps happened while we were away went unseen.
            self.recipients.clear()
            epoch = await self.streams.ensure_epoch()
            conns = list(self.hub.all())
            if epoch != self.epoch:
                log.warning("redis lost its stream data (epoch %s -> %s)", self.epoch, epoch)
                self.epoch = epoch
                for conn in conns:
                    self._send_sync_required(conn, "stream_reset")
                    state: StreamState = conn.sync  # type: ignore[attr-defined]
                    state.cursor = state.saved = state.confirmed = ZERO
                    state.unsent = state.probe_at = None  # an old-epoch position means nothing now
            await self.heartbeat()
            for conn in conns:
                self._start_pump(conn)

    async def heartbeat(self) -> None:
        """Refresh this node's presence; announce devices whose node died."""
        members: dict[str, list[str]] = {}
        for conn in self.hub.all():
            members.setdefault(conn.user_id, []).append(self._member(conn))
        gone = await self.presence.refresh(members)
        for user_id, devices in gone.items():
            for device_id in devices:
                if not self.hub.device_connections(user_id, device_id):
                    await self.publish_status(user_id, device_id, "offline")

    async def save_cursors(self) -> None:
        """Persist how far each device's client got, so a reconnect without last_id resumes there.

        A position is saved only once the client confirmed it: a frame in
        the node's buffers, the kernel's or the client library's queue is
        not yet "delivered" (a client that crashes loses those). Each round
        also probes sockets whose stream moved on (see ``probe``).
        """
        cursors: dict[str, str] = {}
        for conn in self.hub.all():
            state: StreamState = conn.sync  # type: ignore[attr-defined]
            self.probe(conn, state)
            if state.confirmed != state.saved:
                best = cursors.get(conn.device_id, ZERO)
                cursors[conn.device_id] = max(best, state.confirmed, key=parse_id)
                state.saved = state.confirmed
        await self.streams.save_cursors(self.epoch, cursors)

    # -- what the client holds ----------------------------------------------------
    def probe(self, conn: Connection, state: StreamState) -> None:
        """Ping the socket behind the frames written so far, if they moved past what is confirmed.

        A WebSocket client answers pings in order as it reads, so the pong
        proves it read every frame before the ping. Called after each write
        and each saving round: one probe in flight per socket, at most one a
        second, so a socket that gets a frame now and then has each one
        confirmed at once, and a busy one costs one ping a second. Frames
        still queued in the outbox go out after the ping, so they do not count.
        """
        if state.acking or state.probe_at is not None:
            return
        position = state.cursor if state.unsent is None else state.unsent
        if position == state.confirmed:
            return
        now = asyncio.get_running_loop().time()
        if now - state.probed < PROBE_INTERVAL:
            return  # the saving round after the interval sends it
        state.probed = now
        self._probes += 1
        token = b"p%d" % self._probes
        if conn.probe(token):
            state.probe_at, state.probe_token = position, token

    def pong(self, conn: Connection, data: bytes) -> None:
        state: StreamState = conn.sync  # type: ignore[attr-defined]
        if state.probe_at is not None and data == state.probe_token:
            state.confirmed = max(state.confirmed, state.probe_at, key=parse_id)
            state.probe_at = None

    def stream_ack(self, conn: Connection, last_id: str) -> None:
        """The client handled its stream up to ``last_id``: from now on only its acks count.

        An id from another epoch, not a stream id, or past what this socket
        was sent is refused (it would skip entries the client never got).
        """
        state: StreamState = conn.sync  # type: ignore[attr-defined]
        epoch, sep, stream_id = last_id.partition(":")
        if not sep or epoch != self.epoch or not is_stream_id(stream_id):
            raise BadRequest("last_id is not a stream id of this server", code="invalid_last_id")
        if parse_id(stream_id) > parse_id(state.cursor):
            raise BadRequest("last_id is past what this socket was sent", code="invalid_last_id")
        state.acking = True
        state.probe_at = None
        state.confirmed = max(state.confirmed, stream_id, key=parse_id)
