"""/notifications: post, list, get, act."""
from __future__ import annotations

from handlers.base import BaseHandler
from notisync import schemas
from notisync.core.notifications import Dropped
from notisync.views import invoked_view, notification_view


class NotificationsHandler(BaseHandler):
    async def post(self) -> None:
        data = schemas.load(schemas.NOTIFICATION_CREATE, self.json_body())
        source = self.acting_device(self.device_header() or data.get("source_device_id"))
        try:
            record, created = await self.services.notifications.create(self.user_id, data, source)
        except Dropped as dropped:  # a rule said so: nothing stored or sent
            self.respond(202, {"dropped": True, "rule_id": dropped.rule_id})
            return
        if source:
            self.services.devices.seen(self.user_id, source)  # throttled, not awaited
        view = notification_view(record)
        self.respond(201 if created else 200, view, location=f"/api/v1/notifications/{view['id']}")

    async def get(self) -> None:
        params = schemas.load(schemas.NOTIFICATION_LIST, self.query_params())
        page, cursor = await self.services.notifications.list(self.user_id, params)
        self.respond(200, {"notifications": [notification_view(n) for n in page], "next_cursor": cursor})


class NotificationHandler(BaseHandler):
    async def get(self, notification_id: str) -> None:
        record = await self.services.notifications.get(self.user_id, notification_id)
        self.respond(200, notification_view(record))


class ActionHandler(BaseHandler):
    async def put(self, notification_id: str) -> None:
        data = schemas.load(schemas.ACTION, self.json_body())
        device_id = self.acting_device(data.get("device_id") or self.device_header())
        record = await self.services.notifications.act(self.user_id, notification_id, data["action"], device_id)
        if device_id:
            self.services.devices.seen(self.user_id, device_id)  # throttled, not awaited
        self.respond(200, notification_view(record))


class InvokeHandler(BaseHandler):
    async def post(self, notification_id: str) -> None:
        data = schemas.load(schemas.INVOKE, self.json_body())
        device_id = self.acting_device(data.get("device_id") or self.device_header())
        await self.services.notifications.invoke(
            self.user_id, notification_id, data["action_id"], data.get("reply_text"), device_id
        )
        self.respond(202, invoked_view(notification_id, data["action_id"], data.get("reply_text"), device_id))


routes = [
    (r"/api/v1/notifications", NotificationsHandler),
    (r"/api/v1/notifications/([^/]+)", NotificationHandler),
    (r"/api/v1/notifications/([^/]+)/action", ActionHandler),
    (r"/api/v1/notifications/([^/]+)/invoke", InvokeHandler),
]
