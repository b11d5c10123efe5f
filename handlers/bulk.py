"""/notifications/counts and /notifications/actions (core/bulk.py)."""
from __future__ import annotations

from handlers.base import BaseHandler
from notisync import schemas


class CountsHandler(BaseHandler):
    async def get(self) -> None:
        self.respond(200, await self.services.bulk.counts(self.user_id))


class BulkActionHandler(BaseHandler):
    async def post(self) -> None:
        data = schemas.load(schemas.BULK_ACTION, self.json_body())
        device_id = self.acting_device(data.get("device_id") or self.device_header())
        updated = await self.services.bulk.act(self.user_id, data["action"], data, device_id)
        self.respond(200, {"updated": updated})


# Before /notifications/{id} in the route list, which would take these names as ids.
routes = [
    (r"/api/v1/notifications/counts", CountsHandler),
    (r"/api/v1/notifications/actions", BulkActionHandler),
]
