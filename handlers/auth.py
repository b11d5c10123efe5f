"""/auth: register, login, refresh, logout, logout-all, password, ws-ticket; DELETE /account."""
from __future__ import annotations

from handlers.base import BaseHandler
from notisync import schemas
from notisync.core.sessions import TICKET_SECONDS
from notisync.errors import Forbidden


class RegisterHandler(BaseHandler):
    auth_required = False

    async def post(self) -> None:
        if self.services.settings.signup == "closed":  # --signup closed: accounts come from `run.py adduser`
            raise Forbidden("sign-up is closed on this server: ask its operator for an account", code="signup_closed")
        data = schemas.load(schemas.REGISTER, self.json_body())
        user = await self.services.accounts.register(data["email"], data["password"], self.request.remote_ip or "")
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


class PasswordHandler(BaseHandler):
    async def post(self) -> None:
        data = schemas.load(schemas.PASSWORD_CHANGE, self.json_body())
        await self.services.accounts.change_password(self.session, data["current_password"], data["new_password"])
        self.respond(204)


class TicketHandler(BaseHandler):
    async def post(self) -> None:
        ticket = await self.services.sessions.ticket(self.session)
        self.respond(201, {"ticket": ticket, "expires_in": TICKET_SECONDS})


class AccountHandler(BaseHandler):
    async def delete(self) -> None:
        data = schemas.load(schemas.ACCOUNT_DELETE, self.json_body())
        await self.services.accounts.delete_account(self.session, data["password"])
        self.respond(204)


routes = [
    (r"/api/v1/auth/register", RegisterHandler),
    (r"/api/v1/auth/login", LoginHandler),
    (r"/api/v1/auth/refresh", RefreshHandler),
    (r"/api/v1/auth/logout", LogoutHandler),
    (r"/api/v1/auth/logout-all", LogoutAllHandler),
    (r"/api/v1/auth/password", PasswordHandler),
    (r"/api/v1/auth/ws-ticket", TicketHandler),
    (r"/api/v1/account", AccountHandler),
]
