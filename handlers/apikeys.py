"""/devices/{id}/api-keys: long-lived keys for phones and automation apps (core/apikeys.py)."""
from __future__ import annotations

from handlers.base import BaseHandler
from notisync import schemas


class ApiKeysHandler(BaseHandler):
    async def get(self, device_id: str) -> None:
        self.respond(200, {"api_keys": await self.services.api_keys.list(self.user_id, device_id)})

    async def post(self, device_id: str) -> None:
        # The body is optional: {"name": …} only labels the key.
        data = schemas.load(schemas.API_KEY_CREATE, self.json_body() if self._body or self._too_large else {})
        created = await self.services.api_keys.create(self.user_id, device_id, data.get("name"))
        self.respond(201, created, location=f"/api/v1/devices/{device_id}/api-keys/{created['id']}")


class ApiKeyHandler(BaseHandler):
    async def delete(self, device_id: str, key_id: str) -> None:
        await self.services.api_keys.revoke(self.user_id, device_id, key_id)
        self.respond(204)


routes = [
    (r"/api/v1/devices/([^/]+)/api-keys", ApiKeysHandler),
    (r"/api/v1/devices/([^/]+)/api-keys/([^/]+)", ApiKeyHandler),
]
