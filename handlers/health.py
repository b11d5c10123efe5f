"""GET /health: no auth; 503 with status "degraded" when a dependency is down."""
from __future__ import annotations

from handlers.base import BaseHandler


class HealthHandler(BaseHandler):
    auth_required = False

    async def get(self) -> None:
        ok, report = await self.services.health()
        self.respond(200 if ok else 503, report)


routes = [(r"/health", HealthHandler)]
