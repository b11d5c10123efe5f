"""Account use cases: register, log in (rate limited), rotate refresh tokens."""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from notisync.core.auth import DUMMY_HASH, TokenPair, token_hash
from notisync.core.devices import DeviceService
from notisync.core.passwords import Passwords
from notisync.core.sessions import Session, SessionService
from notisync.core.throttle import SignInLimits
from notisync.errors import ApiError, Conflict, Forbidden, Unauthorized
from notisync.views import user_view
from store.documents import DocumentStore, utcnow
from store.errors import DuplicateKey

log = logging.getLogger(__name__)


class AccountService:
    def __init__(
        self, store: DocumentStore, sessions: SessionService, devices: DeviceService, limits: SignInLimits,
        passwords: Passwords,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.devices = devices
        self.limits = limits
        self.passwords = passwords

    async def register(self, email: str, password: str, client: str) -> dict[str, Any]:
        await self.limits.register_attempt(client)
        # Deliberately slow: off the event loop, behind the gate (core/passwords.py).
        password_hash = await self.passwords.hash(password)
        user = {"id": str(uuid.uuid4()), "email": email.lower(), "password_hash": password_hash, "created_at": utcnow()}
        try:
            await self.store.create_user(user)
        except DuplicateKey:
            raise Conflict("email is already registered", code="email_taken") from None
        return user_view(user)

    async def login(self, email: str, password: str, client: str, device_id: str | None = None) -> dict[str, Any]:
        """A new session; with ``device_id`` (a live device of this user, else 404) bound to it."""
        email = email.lower()
        await self.limits.login_attempt(email, client)
        user = await self.store.get_user_by_email(email)
        try:
            ok = await self.passwords.verify(password, user["password_hash"] if user else DUMMY_HASH)
        except ApiError:  # busy: nothing was checked, so nothing counts as a failure
            await self.limits.login_not_checked(email, client)
            raise
        if user is None or not ok:
            raise Unauthorized("wrong email or password", code="invalid_credentials")
        await self.limits.login_succeeded(email, client)
        await self._rehash_if_old(user, password)
        if device_id is not None:
            await self.devices.require_live(user["id"], device_id)
        return {**await self.new_session(user["id"], device_id), "user": user_view(user)}

    async def new_session(self, user_id: str, device_id: str | None = None) -> dict[str, Any]:
        """A session's first tokens, as the API returns them."""
        _, pair = await self.sessions.start(user_id, device_id)
        return await self._answer(user_id, pair)

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        # A refresh token of an ended session is refused here, before the store.
        session = await self.sessions.verify(refresh_token, "refresh")
        outcome = await self.store.use_refresh_token(token_hash(refresh_token), utcnow())
        if outcome == "reused":
            # A used refresh token presented again means it leaked: end the
            # whole family (its session) and every other refresh token of the
            # user, so neither the thief nor the owner keeps going.
            await self.store.revoke_refresh_tokens(session.user_id)
            await self.sessions.end(session.user_id, [session.session_id])
            log.warning("refresh token reuse for user %s: its session ended", session.user_id)
        if outcome != "ok":
            raise Unauthorized("refresh token is no longer valid", code="invalid_token")
        user = await self.store.get_user(session.user_id)
        if user is None:
            raise Unauthorized("refresh token is no longer valid", code="invalid_token")
        pair = await self.sessions.renew(session)
        return {**await self._answer(user["id"], pair), "user": user_view(user)}

    async def logout(self, session: Session) -> None:
        await self.sessions.end(session.user_id, [session.session_id])

    async def logout_all(self, session: Session) -> None:
        await self.sessions.end_all(session.user_id)

    async def change_password(self, session: Session, current: str, new: str) -> None:
        """Needs the current password; every other session of the user ends."""
        user = await self._require_password(session.user_id, current)
        password_hash = await self.passwords.hash(new)
        await self.store.set_password_hash(user["id"], password_hash)
        await self.sessions.end_all(user["id"], keep=session.session_id)

    async def delete_account(self, session: Session, password: str) -> None:
        """The user, devices, notifications, streams, presence and sessions: all gone; the email is free again."""
        user = await self._require_password(session.user_id, password)
        await self.sessions.end_all(user["id"])  # tokens refused and sockets closed first
        device_ids = await self.store.delete_user(user["id"])
        await self.devices.forget_user(user["id"], device_ids)

    async def _require_password(self, user_id: str, password: str) -> dict[str, Any]:
        user = await self.store.get_user(user_id)
        if user is None:
            raise Unauthorized("this account no longer exists", code="invalid_token")
        if not await self.passwords.verify(password, user["password_hash"]):
            raise Forbidden("wrong password", code="wrong_password")
        return user

    async def _rehash_if_old(self, user: dict[str, Any], password: str) -> None:
        """A hash of an older scheme or weaker parameters is replaced while the password is at hand."""
        if not self.passwords.needs_rehash(user["password_hash"]):
            return
        try:
            await self.store.set_password_hash(user["id"], await self.passwords.hash(password))
        except ApiError as exc:  # busy: the login stands, the next one upgrades it
            log.info("password rehash postponed: %s", exc.message)
            return
        log.info("password hash of user %s upgraded to argon2id", user["id"])

    async def _answer(self, user_id: str, pair: TokenPair) -> dict[str, Any]:
        expires = dt.datetime.fromtimestamp(pair.refresh_expires_at, dt.timezone.utc)
        await self.store.add_refresh_token(token_hash(pair.refresh_token), user_id, expires)
        return {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.sessions.tokens.access_ttl,
        }
