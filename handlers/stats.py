"""WebSocket connection counts: this node's, and the caller's across all nodes."""
from __future__ import annotations

from handlers.base import BaseHandler
from notisync.protocol import now_iso


class NodeStatsHandler(BaseHandler):
    async def get(self) -> None:
        self.respond(200, {"total_connections": self.services.stats.node_connections(), "timestamp": now_iso()})


class UserStatsHandler(BaseHandler):
    async def get(self) -> None:
        count = await self.services.stats.user_connections(self.user_id)
        self.respond(200, {"user_id": self.user_id, "active_connections": count, "timestamp": now_iso()})


routes = [
    (r"/api/v1/websocket/stats", NodeStatsHandler),
    (r"/api/v1/websocket/users/stats", UserStatsHandler),
]
