"""/rules, /devices/{id}/preferences, /digest (SPEC "Rules, device preferences, digest")."""
from __future__ import annotations

from handlers.base import BaseHandler
from notisync import hub_schemas, schemas
from notisync.core.devicepolicy import reach


class RulesHandler(BaseHandler):
    async def get(self) -> None:
        self.respond(200, {"rules": await self.services.rules.list(self.user_id)})

    async def post(self) -> None:
        data = hub_schemas.load(hub_schemas.RULE, self.json_body())
        rule = await self.services.rules.create(self.user_id, data)
        self.respond(201, rule, location=f"/api/v1/rules/{rule['id']}")


class RuleHandler(BaseHandler):
    async def put(self, rule_id: str) -> None:
        data = hub_schemas.load(hub_schemas.RULE_UPDATE, self.json_body())
        self.respond(200, await self.services.rules.update(self.user_id, rule_id, data))

    async def delete(self, rule_id: str) -> None:
        await self.services.rules.delete(self.user_id, rule_id)
        self.respond(204)


class RuleTestHandler(BaseHandler):
    """A dry run: what the rules would do with this notification. Nothing is stored or sent."""

    async def post(self) -> None:
        data = schemas.load(schemas.NOTIFICATION_CREATE, self.json_body())
        source = self.acting_device(self.device_header() or data.get("source_device_id"))
        services = self.services
        entry = await services.fan_out.device_list(self.user_id, None)
        decision = await services.notifications.decide(self.user_id, data, source)
        record = {"app_name": data["app_name"], "route": decision.route, "silent": decision.silent}
        self.respond(200, {"matched": decision.matched, "result": {
            "category": decision.category, "priority": decision.priority, "silent": decision.silent,
            "dropped": decision.dropped, "device_ids": [] if decision.dropped else reach(entry, record, source),
        }})


class PreferencesHandler(BaseHandler):
    async def get(self, device_id: str) -> None:
        self.respond(200, await self.services.preferences.get(self.user_id, device_id))

    async def put(self, device_id: str) -> None:
        data = hub_schemas.load(hub_schemas.PREFERENCES, self.json_body())
        self.respond(200, await self.services.preferences.update(self.user_id, device_id, data))


class DigestHandler(BaseHandler):
    async def get(self) -> None:
        params = hub_schemas.load(hub_schemas.DIGEST_QUERY, self.query_params())
        self.respond(200, await self.services.digest.summary(self.user_id, params["date"], params["timezone"]))


class DigestScheduleHandler(BaseHandler):
    async def get(self) -> None:
        self.respond(200, await self.services.digest.get_schedule(self.user_id))

    async def put(self) -> None:
        data = hub_schemas.load(hub_schemas.DIGEST_SCHEDULE, self.json_body())
        self.respond(200, await self.services.digest.set_schedule(self.user_id, data))


routes = [
    (r"/api/v1/rules", RulesHandler),
    (r"/api/v1/rules/test", RuleTestHandler),
    (r"/api/v1/rules/([^/]+)", RuleHandler),
    (r"/api/v1/devices/([^/]+)/preferences", PreferencesHandler),
    (r"/api/v1/digest", DigestHandler),
    (r"/api/v1/digest/schedule", DigestScheduleHandler),
]
