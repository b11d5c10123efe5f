"""Who is online: presence entries per socket, the heartbeat that keeps them, device_status.

A device is online while it has a socket on any node. Each socket is an
entry in the user's presence set in Redis (``store/presence.py``) that
expires unless this node's heartbeat refreshes it, so a node that dies
leaves no device "online" past the TTL; the heartbeat also announces the
devices such a node left behind.
"""
from __future__ import annotations

from notisync import protocol
from notisync.delivery import events
from notisync.delivery.hub import Hub
from notisync.delivery.subscriber import Connection
from notisync.hooks import hooks
from store.bus import Bus
from store.presence import Presence


class Liveness:
    def __init__(self, hub: Hub, presence: Presence, bus: Bus, node_id: str) -> None:
        self.hub = hub
        self.presence = presence
        self.bus = bus
        self.node_id = node_id

    async def join(self, conn: Connection) -> None:
        """Count the socket in; the device's first socket anywhere makes it online."""
        if await self.presence.add(conn.user_id, conn.device_id, self._member(conn)):
            await self.publish_status(conn.user_id, conn.device_id, "online")

    async def leave(self, conn: Connection) -> None:
        if await self.presence.remove(conn.user_id, conn.device_id, self._member(conn)):
            await self.publish_status(conn.user_id, conn.device_id, "offline")

    async def publish_status(self, user_id: str, device_id: str, status: str) -> None:
        """device_status to the user's other devices, here and on other nodes: live only, never queued."""
        body = protocol.frame(protocol.DEVICE_STATUS, {"device_id": device_id, "status": status})
        self.broadcast_status(user_id, device_id, body)
        await self.bus.publish(user_id, events.encode(events.DeviceStatus(device_id)), body)
        hooks.bus_out()

    async def publish_change(self, user_id: str, device_id: str, change: str) -> None:
        """device_changed to every socket of the user, here and on other nodes: live only.

        Tells open dashboards that the device list changed (added, renamed,
        revoked) so they refetch it; the renamed device's own sockets hear it too.
        """
        body = protocol.frame(protocol.DEVICE_CHANGED, {"device_id": device_id, "change": change})
        self.broadcast_change(user_id, body)
        await self.bus.publish(user_id, events.encode(events.DeviceChanged(device_id)), body)
        hooks.bus_out()

    def broadcast_change(self, user_id: str, body: bytes) -> None:
        self.hub.broadcast(self.hub.user_connections(user_id), body)

    def broadcast_status(self, user_id: str, device_id: str, body: bytes) -> None:
        self.hub.broadcast(self.hub.user_connections(user_id, exclude_device=device_id), body)

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

    def _member(self, conn: Connection) -> str:
        return self.presence.member(conn.device_id, self.node_id, conn.conn_id)
