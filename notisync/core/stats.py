"""Connection counts for the stats routes: this node's sockets, and a user's across all nodes."""
from __future__ import annotations

from notisync.delivery.hub import Hub
from store.presence import Presence


class StatsService:
    def __init__(self, hub: Hub, presence: Presence) -> None:
        self.hub = hub
        self.presence = presence

    def node_connections(self) -> int:
        return self.hub.count

    async def user_connections(self, user_id: str) -> int:
        """The user's sockets on every node (presence entries still alive)."""
        return await self.presence.connection_count(user_id)
