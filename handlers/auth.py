"""POST /auth/register, /auth/login, /auth/refresh, /auth/logout, /auth/logout-all."""
from __future__ import annotations

from handlers.base import BaseHandler
from notisync import schemas


class RegisterHandler(BaseHandler):
    auth_required = False

    async def post(self) -> None:
        data = schemas.load(schemas.REGISTER, self.json_body())
        user = await self.services.accounts.register(data["email"], data["password"])
        self.respond(201, {"user": user})


class LoginHandler(BaseHandler):
    auth_required = False

    async def post(self) -> None:
        data = schemas.load(schemas.LOGIN, self.json_body())
        result = await self.services.accounts.login(
            data["email"], data["password"], self.request.remote_ip or "", data.get("device_id"))
        self.respond(200, result)


class RefreshHandler(BaseHandler):
    auth_required = False

    async def post(self) -> None:
        data = schemas.load(schemas.REFRESH, self.json_body())
        self.respond(200, await self.services.accounts.refresh(data["refresh_token"]))


class LogoutHandler(BaseHandler):
    async def post(self) -> None:
        await self.services.accounts.logout(self.session)
        self.respond(204)


class LogoutAllHandler(BaseHandler):
    async def post(self) -> None:
        await self.services.accounts.logout_all(self.session)
        self.respond(204)


routes = [
    (r"/api/v1/auth/register", RegisterHandler),
    (r"/api/v1/auth/login", LoginHandler),
    (r"/api/v1/auth/refresh", RefreshHandler),
    (r"/api/v1/auth/logout", LogoutHandler),
    (r"/api/v1/auth/logout-all", LogoutAllHandler),
]
