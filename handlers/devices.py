"""/devices: register, list with presence, rename, revoke."""
from __future__ import annotations

from handlers.base import BaseHandler
from notisync import schemas


class DevicesHandler(BaseHandler):
    async def get(self) -> None:
        self.respond(200, {"devices": await self.services.devices.list(self.user_id)})

    async def post(self) -> None:
        data = schemas.load(schemas.DEVICE_CREATE, self.json_body())
        device, created = await self.services.devices.create(self.user_id, data)
        # A session of the device's own: the client keeps it and drops the one it
        # signed in with, so revoking this device ends it (SPEC "Sessions").
        session = await self.services.accounts.new_session(self.user_id, device["id"])
        self.respond(201 if created else 200, {**device, "session": session},
                     location=f"/api/v1/devices/{device['id']}")


class DeviceHandler(BaseHandler):
    async def get(self, device_id: str) -> None:
        self.respond(200, await self.services.devices.get(self.user_id, device_id))

    async def put(self, device_id: str) -> None:
        data = schemas.load(schemas.DEVICE_UPDATE, self.json_body())
        self.respond(200, await self.services.devices.update(self.user_id, device_id, data))

    async def delete(self, device_id: str) -> None:
        await self.services.devices.revoke(self.user_id, device_id)
        self.respond(204)


routes = [
    (r"/api/v1/devices", DevicesHandler),
    (r"/api/v1/devices/([^/]+)", DeviceHandler),
]
