"""Getting each device's stream onto its sockets: connect, replay, live, leave.

Why nothing is lost (the order of steps below is the proof):

1. A socket is indexed in the hub in "pumping" mode before anything else, so
   a wake-up that arrives while it is catching up only marks it dirty.
2. The node subscribes to the user's channel and waits for Redis to confirm,
   then adds the socket to the user's presence. Every entry appended after
   that point produces a wake-up this node sees: the fan-out script
   publishes whenever the presence holds a socket of a node other than the
   appending one, and the appending node wakes its own sockets from the
   script's reply (``notisync/delivery/fanout.py``; a reply lost to a Redis
   failure makes it re-read its sockets' streams instead).
3. The socket then reads its device's stream after its cursor, in batches,
   until a read comes back short and no wake-up arrived meanwhile. Entries
   appended before step 2 are in the stream; entries after it woke us.
4. Live: a wake-up carries (previous id, new id) per device. If the socket's
   cursor is the previous id, the frame is the next one and is written
   straight from the wake-up; an id at or below the cursor is a duplicate;
   anything else is a gap, and the socket goes back to step 3.

Each stream entry names its predecessor, so step 3 also notices entries
trimmed away (more than 1000 behind, or older than 7 days) and tells the
client ``sync_required`` instead of skipping silently. If Redis loses a
user's data (the whole server, or one cluster shard), the user's epoch
changes, and each of the user's sockets is told ``sync_required`` and
restarts from the new streams.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

from notisync import protocol
from notisync.delivery import events
from notisync.delivery.hub import Hub
from notisync.delivery.liveness import Liveness
from notisync.delivery.recipients import Recipients
from notisync.delivery.subscriber import Connection
from notisync.hooks import hooks
from store.bus import Bus
from store.documents import Record
from store.streams import ZERO, Streams, is_stream_id, parse_id

log = logging.getLogger(__name__)

BATCH = 500


class Delivery:
    """Replay and live delivery for this node's sockets."""

    def __init__(
        self, hub: Hub, streams: Streams, bus: Bus, liveness: Liveness, recipients: Recipients,
        max_sockets_per_device: int = 0,
    ) -> None:
        self.hub = hub
        self.streams = streams
        self.bus = bus
        self.liveness = liveness
        self.recipients = recipients
        self._resync_lock = asyncio.Lock()
        self.max_sockets_per_device = max_sockets_per_device  # on this node; 0: no limit

    # -- connect / disconnect ---------------------------------------------
    async def connect(self, conn: Connection, device: Record, last_id: str | None) -> None:
        sub = conn.subscriber
        sub.pumping = True
        self.hub.add(conn)
        # The newest sockets win: a client that reconnects without closing its
        # old socket keeps working, and a flood of sockets for one device
        # holds at most the limit (the closing ones leave via disconnect).
        for old in self.hub.beyond(conn.user_id, conn.device_id, self.max_sockets_per_device):
            old.close(protocol.CLOSE_POLICY, "replaced")
        await self.bus.subscribe(conn.user_id)
        await self.liveness.join(conn)
        sub.epoch, last, stored = await self.streams.device_state(conn.user_id, conn.device_id)
        sub.cursor = await self._start_cursor(conn, device, last_id, last, stored)
        # The stored position, or the client's own last_id: held by the client.
        sub.confirmed = sub.cursor
        sub.saved = sub.cursor if last_id is None else ZERO
        await self._pump(conn)

    async def disconnect(self, conn: Connection) -> None:
        sub = conn.subscriber
        self.hub.remove(conn)
        if sub.task and not sub.task.done():
            sub.task.cancel()
        await self.bus.unsubscribe(conn.user_id)
        await self.liveness.leave(conn)
        if sub.confirmed != sub.saved:
            await self.streams.save_cursors({conn.user_id: (sub.epoch, {conn.device_id: sub.confirmed})})

    async def _start_cursor(
        self, conn: Connection, device: Record, last_id: str | None, last: str, stored: str | None,
    ) -> str:
        if last_id == "0":
            # "I hold nothing yet": everything retained, exactly, no matter
            # what earlier sockets of this device were written.
            return self._from_start(conn, device)
        if last_id is not None:
            epoch, sep, stream_id = last_id.partition(":")
            if not sep or not is_stream_id(stream_id):
                return await self._restart(conn, "unknown_last_id", at_end=True)
            if epoch != conn.subscriber.epoch:
                return await self._restart(conn, "stream_reset", at_end=False)
            if parse_id(stream_id) > parse_id(last):
                return await self._restart(conn, "unknown_last_id", at_end=True)
            return stream_id
        return stored if stored is not None else self._from_start(conn, device)

    def _from_start(self, conn: Connection, device: Record) -> str:
        # A device older than this epoch had its queue in a Redis that lost
        # its data: what it missed is gone, so it must refetch.
        # (A new device is never older: see DeviceService.create.)
        if device["created_at"].timestamp() * 1000 < int(conn.subscriber.epoch):
            self._send_sync_required(conn, "stream_reset")
        return ZERO

    async def _restart(self, conn: Connection, reason: str, at_end: bool) -> str:
        # Read the stream's end *before* telling the client: everything up to
        # it was stored before the client's refetch can start; everything
        # after it is delivered. (The other order skipped an entry appended
        # in between, after a refetch that was too early to see it.)
        position = await self.streams.last_id(conn.user_id, conn.device_id) if at_end else ZERO
        self._send_sync_required(conn, reason)
        return position

    def _send_sync_required(self, conn: Connection, reason: str) -> None:
        hooks.sync_required(reason)
        conn.send(protocol.frame(protocol.SYNC_REQUIRED, {"reason": reason}))

    # -- replay ----------------------------------------------------------------
    async def _pump(self, conn: Connection) -> None:
        """Write the stream after the socket's cursor until caught up (step 3)."""
        sub = conn.subscriber
        sub.pumping = True
        hooks.replay()
        try:
            while True:
                sub.dirty = False
                result = await self.streams.read_after(conn.user_id, conn.device_id, sub.cursor, BATCH)
                entries = result.entries
                # With no entries, a last id behind the cursor means the
                # stream expired (7 days after its last append): also trimmed.
                trimmed = entries[0].prev != sub.cursor if entries else result.last != sub.cursor
                if trimmed:
                    self._send_sync_required(conn, "history_trimmed")
                    sub.cursor = result.last if not entries else sub.cursor
                for entry in entries:
                    if conn.crowded:  # a big backlog goes out at the client's pace, not past the limit
                        await conn.room()
                    if not conn.send(protocol.with_id(entry.body, f"{sub.epoch}:{entry.id}")):
                        return  # socket gone: its next connection resumes from its cursor
                    sub.cursor = entry.id
                if len(entries) < BATCH and not sub.dirty:
                    return
        finally:
            sub.pumping = False

    def _start_pump(self, conn: Connection) -> None:
        sub = conn.subscriber
        if sub.pumping:
            sub.dirty = True
            return
        sub.pumping = True
        sub.task = asyncio.create_task(self._pump_logged(conn))

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
            framed_epoch = ""
            for conn in list(conns):
                sub = conn.subscriber
                if sub.pumping:
                    sub.dirty = True
                elif sub.cursor == prev:
                    if framed is None or framed_epoch != sub.epoch:  # encoded once per device
                        framed, framed_epoch = protocol.with_id(body, f"{sub.epoch}:{new}"), sub.epoch
                    conn.send(framed)
                    sub.cursor = new
                    hooks.live_write(new)
                elif parse_id(new) > parse_id(sub.cursor):
                    self._start_pump(conn)

    def on_bus_message(self, user_id: str, header: dict[str, Any], body: bytes) -> None:
        """Another node's event for a user with sockets here (``notisync/delivery/events.py``)."""
        hooks.bus_in()
        event = events.decode(header)
        if isinstance(event, events.NewEntries):
            self.deliver(user_id, event.entries, body)
        elif isinstance(event, events.DeviceStatus):
            self.liveness.broadcast_status(user_id, event.device_id, body)
        elif isinstance(event, events.DeviceChanged):
            self.liveness.broadcast_change(user_id, body)
        elif isinstance(event, events.Revoked):
            self._close_device(user_id, event.device_id)
        elif isinstance(event, events.SessionEnded):
            self._close_sessions(user_id, event.session_ids)

    def expect_own_echo(self, user_id: str) -> None:
        """A fan-out's reply was lost: take this node's own wake-ups for the user too."""
        self.bus.expect_own_echo(user_id)

    def catch_up(self, user_id: str) -> None:
        """Re-read the streams of the user's sockets here: an append may have happened unseen."""
        for conn in self.hub.user_connections(user_id):
            self._start_pump(conn)

    async def revoke_device(self, user_id: str, device_id: str) -> None:
        """Close the device's sockets on this node and every other."""
        self._close_device(user_id, device_id)
        await self.bus.publish(user_id, events.encode(events.Revoked(device_id)))
        hooks.bus_out()

    async def end_sessions(self, user_id: str, session_ids: list[str]) -> None:
        """Close the sockets of these sessions on this node and every other."""
        self._close_sessions(user_id, session_ids)
        await self.bus.publish(user_id, events.encode(events.SessionEnded(tuple(session_ids))))
        hooks.bus_out()

    def _close_sessions(self, user_id: str, session_ids: "tuple[str, ...] | list[str]") -> None:
        ended = set(session_ids)
        for conn in self.hub.user_connections(user_id):
            if conn.session_id in ended:
                conn.close(protocol.CLOSE_POLICY, "session ended")

    def _close_device(self, user_id: str, device_id: str) -> None:
        for conn in self.hub.device_connections(user_id, device_id):
            conn.close(protocol.CLOSE_POLICY, "device revoked")

    # -- recovery ---------------------------------------------------------------
    async def resync_all(self) -> None:
        """After Redis came back: adopt each user's epoch, re-register, re-read every stream."""
        async with self._resync_lock:
            # Device-list versions may have restarted with Redis's data, and
            # whatever bumps happened while we were away went unseen.
            self.recipients.clear()
            conns = list(self.hub.all())
            epochs = {user_id: await self.streams.ensure_epoch(user_id) for user_id in {c.user_id for c in conns}}
            for conn in conns:
                sub = conn.subscriber
                epoch = epochs[conn.user_id]
                if epoch != sub.epoch:
                    log.warning("redis lost the stream data of a user (epoch %s -> %s)", sub.epoch, epoch)
                    self._send_sync_required(conn, "stream_reset")
                    sub.epoch = epoch
                    sub.cursor = sub.saved = sub.confirmed = ZERO
                    sub.unsent = sub.probe_at = None  # an old-epoch position means nothing now
            await self.liveness.heartbeat()
            for conn in conns:
                self._start_pump(conn)
