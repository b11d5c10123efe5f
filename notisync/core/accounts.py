"""Account use cases: register, log in (rate limited), rotate refresh tokens."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from notisync.core.auth import ACCESS_TTL, DUMMY_HASH, TokenService, hash_password, token_hash, verify_password
from notisync.errors import Conflict, RateLimited, Unauthorized
from store.errors import DuplicateKey
from notisync.views import user_view
from store.documents import DocumentStore, utcnow
from store.keys import Keys

log = logging.getLogger(__name__)

LOGIN_LIMIT = 5
LOGIN_WINDOW = 60


class AccountService:
    def __init__(self, store: DocumentStore, tokens: TokenService, redis: Redis, keys: Keys) -> None:
        self.store = store
        self.tokens = tokens
        self.redis = redis
        self.keys = keys

    async def register(self, email: str, password: str) -> dict[str, Any]:
        # scrypt is deliberately slow: run it off the event loop.
        password_hash = await asyncio.to_thread(hash_password, password)
        user = {"id": str(uuid.uuid4()), "email": email.lower(), "password_hash": password_hash, "created_at": utcnow()}
        try:
            await self.store.create_user(user)
        except DuplicateKey:
            raise Conflict("email is already registered", code="email_taken") from None
        return user_view(user)

    async def login(self, email: str, password: str, client: str) -> dict[str, Any]:
        await self._count_attempt(email.lower(), client)
        user = await self.store.get_user_by_email(email)
        ok = await asyncio.to_thread(verify_password, password, user["password_hash"] if user else DUMMY_HASH)
        if user is None or not ok:
            raise Unauthorized("wrong email or password", code="invalid_credentials")
        return await self._issue(user)

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        user_id = self.tokens.verify(refresh_token, "refresh")
        outcome = await self.store.use_refresh_token(token_hash(refresh_token), utcnow())
        if outcome == "reused":
            # A used refresh token presented again means it leaked: end the
            # whole family so neither the thief nor the owner keeps going.
            await self.store.revoke_refresh_tokens(user_id)
            log.warning("refresh token reuse for user %s: all sessions revoked", user_id)
        if outcome != "ok":
            raise Unauthorized("refresh token is no longer valid", code="invalid_token")
        user = await self.store.get_user(user_id)
        if user is None:
            raise Unauthorized("refresh token is no longer valid", code="invalid_token")
        return await self._issue(user)

    async def _issue(self, user: dict[str, Any]) -> dict[str, Any]:
        pair = self.tokens.issue(user["id"])
        expires = dt.datetime.fromtimestamp(pair.refresh_expires_at, dt.timezone.utc)
        await self.store.add_refresh_token(token_hash(pair.refresh_token), user["id"], expires)
        return {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TTL,
            "user": user_view(user),
        }

    async def _count_attempt(self, email: str, client: str) -> None:
        """At most LOGIN_LIMIT tries per email and client address per window."""
        key = self.keys.login_attempts(email, client)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                # The window starts at the first try (SET NX), not the latest.
                pipe.set(key, 0, ex=LOGIN_WINDOW, nx=True)
                pipe.incr(key)
                pipe.ttl(key)
                _, count, ttl = await pipe.execute()
        except RedisError as exc:
            # Failing open keeps logins working while Redis is down; the
            # scrypt cost still bounds guessing speed.
            log.warning("login rate limit unavailable: %s", exc)
            return
        if count > LOGIN_LIMIT:
            raise RateLimited("too many login attempts; try again later", retry_after=max(int(ttl), 1))
