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
from notisync.hub import Connection, Hub
from notisync.recipients import Recipients
from notisync.runtime.metrics import hooks
from store.bus import Bus
from store.documents import Record
from store.presence import Presence
from store.streams import ZERO, Streams, is_stream_id, parse_id

log = logging.getLogger(__name__)

BATCH = 500


@dataclass(slots=True)  # one per socket
class StreamState:
    """Per-socket position in its device's stream."""

    cursor: str = ZERO
    pumping: bool = True
    dirty: bool = False
    saved: str = ZERO
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
        if state.cursor != state.saved:
            await self.streams.save_cursors(self.epoch, {conn.device_id: state.cursor})

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
        hooks.sync_required(reason)
        conn.send(protocol.frame(protocol.SYNC_REQUIRED, {"reason": reason}))

    # -- replay ----------------------------------------------------------------
    async def _pump(self, conn: Connection) -> None:
        """Write the stream after the socket's cursor until caught up (step 3)."""
        state: StreamState = conn.sync  # type: ignore[attr-defined]
        state.pumping = True
        hooks.replay()
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
            hooks.error(exc)
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
                    hooks.live_write(new)
                elif parse_id(new) > parse_id(state.cursor):
                    self._start_pump(conn)

    def on_bus_message(self, user_id: str, header: dict[str, Any], body: bytes) -> None:
        hooks.bus_in()
        kind = header.get("k")
        if kind == "m":
            self.deliver(user_id, {d: (p, i) for d, (p, i) in header["e"].items()}, body)
        elif kind == "st":
            self.hub.broadcast(self.hub.user_connections(user_id, exclude_device=header["d"]), body)
        elif kind == "rv":
            self.close_device(user_id, header["d"])

    def close_device(self, user_id: str, device_id: str) -> None:
        for conn in self.hub.device_connections(user_id, device_id):
            conn.close(protocol.CLOSE_POLICY, "device revoked")

    async def publish_status(self, user_id: str, device_id: str, status: str) -> None:
        """device_status to the user's other devices: live only, never queued."""
        body = protocol.frame(protocol.DEVICE_STATUS, {"device_id": device_id, "status": status})
        self.hub.broadcast(self.hub.user_connections(user_id, exclude_device=device_id), body)
        assert self.bus is not None
        await self.bus.publish(user_id, {"k": "st", "d": device_id}, body)
        hooks.bus_out()

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
                    state.cursor = state.saved = ZERO
                    state.unsent = None  # an old-epoch position means nothing now
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
        """Persist how far each device got, so a reconnect resumes there."""
        cursors: dict[str, str] = {}
        for conn in self.hub.all():
            state: StreamState = conn.sync  # type: ignore[attr-defined]
            # Frames still in the outbox have not reached the socket yet.
            position = state.cursor if state.unsent is None else state.unsent
            if position != state.saved and not state.pumping:
                best = cursors.get(conn.device_id, ZERO)
                cursors[conn.device_id] = max(best, position, key=parse_id)
                state.saved = position
        await self.streams.save_cursors(self.epoch, cursors)
