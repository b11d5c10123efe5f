"""Sessions: one sign-in each, ended on demand, on every node within a second.

Every token carries its session id (``sid``). The document store keeps each
session (ended or not); Redis keeps the live ones as a hash {user, device}
that expires with its refresh tokens (30 days, renewed on each refresh).
Ending a session marks it in the store, then deletes the hash. A node checks
a token's session against Redis at most once per ``CACHE_SECONDS`` and
remembers the answer, so an ended session's access tokens are refused
everywhere within that time without a store read per request; only a hash
Redis does not have (expired, or Redis lost its data) sends the check to the
store, which puts it back. So a Redis that restarts empty logs nobody out,
and cannot bring an ended session back. Sockets opened with an ended session
close at once: a SessionEnded event reaches every node holding one of the
user's sockets (``delivery/events.py``). Its refresh tokens stop at once
too, since a refresh checks the session first.

A session made for a device (``POST /devices``, or login with ``device_id``)
is *bound* to it: it may act only as that device, and revoking the device
ends it.
"""
from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from notisync.core.auth import REFRESH_TTL, TokenPair, TokenService
from notisync.delivery.replay import Delivery
from notisync.errors import Unauthorized
from store.documents import DocumentStore, utcnow
from store.keys import Keys

if TYPE_CHECKING:  # wired after both are built (runtime/services.py)
    from notisync.core.apikeys import ApiKeyService

API_KEY_PREFIX = "nsk_"  # core/apikeys.py makes keys; a JWT never starts so
CACHE_SECONDS = 0.5  # how stale a node's view of a live session may be (SPEC: ended everywhere within 1 s)
ENDED_CACHE_SECONDS = 60.0  # an ended session never comes back: remember that longer
CACHE_LIMIT = 100_000
TICKET_SECONDS = 30  # entries before expired ones are swept out
NEVER = 2**40  # the "expiry" of a device API key's session, which has none (unix seconds)
_ENDED = "\x00ended"  # cache marker: the session is over (device ids are UUIDs, never this)


@dataclass(frozen=True)
class Session:
    user_id: str
    session_id: str
    device_id: str | None  # set: a bound session, which may act only as this device
    expires_at: int  # when the access token that proved it expires (unix seconds)


class SessionService:
    def __init__(
        self, store: DocumentStore, redis: Redis, keys: Keys, tokens: TokenService, delivery: Delivery
    ) -> None:
        self.store = store
        self.redis = redis
        self.keys = keys
        self.tokens = tokens
        self.delivery = delivery
        self._cache: dict[str, tuple[float, str]] = {}  # sid -> (valid until, device id / "" / _ENDED)
        self.api_keys: ApiKeyService | None = None  # device API keys are sessions too

    async def start_with_id(self, sid: str, user_id: str, device_id: str) -> None:
        """A session bound to the device under a given id, without tokens: a device API key's."""
        await self.store.create_session(
            {"id": sid, "user_id": user_id, "device_id": device_id, "created_at": utcnow(), "ended_at": None}
        )
        await self._remember(sid, user_id, device_id)

    async def start(self, user_id: str, device_id: str | None = None) -> tuple[str, TokenPair]:
        """A new session (bound to ``device_id`` if given): its id and first token pair."""
        sid = uuid.uuid4().hex
        await self.store.create_session(
            {"id": sid, "user_id": user_id, "device_id": device_id, "created_at": utcnow(), "ended_at": None}
        )
        await self._remember(sid, user_id, device_id)
        return sid, self.tokens.issue(user_id, sid)

    async def _remember(self, sid: str, user_id: str, device_id: str | None) -> None:
        key = self.keys.session(sid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"user": user_id, "device": device_id or ""})
            pipe.expire(key, REFRESH_TTL)
            await pipe.execute()

    async def verify(self, token: str, token_type: str = "access") -> Session:
        """The session of a valid token (or device API key) whose session is still going, else 401."""
        if token_type == "access" and self.api_keys is not None and token.startswith(API_KEY_PREFIX):
            user_id, sid, device_id = await self.api_keys.resolve(token)
            await self._device_of(sid, user_id)  # 401 once the key, its device or every session ended
            await self.api_keys.used(user_id, sid, device_id)
            return Session(user_id, sid, device_id, NEVER)
        claims = self.tokens.verify(token, token_type)
        device = await self._device_of(claims.session_id, claims.user_id)
        return Session(claims.user_id, claims.session_id, device or None, claims.expires_at)

    async def ticket(self, session: Session) -> str:
        """A single-use ticket for /ws, valid TICKET_SECONDS (browsers cannot set headers on a socket)."""
        ticket = secrets.token_urlsafe(24)
        value = f"{session.user_id}|{session.session_id}|{session.expires_at}"
        await self.redis.set(self.keys.ws_ticket(ticket), value, ex=TICKET_SECONDS)
        return ticket

    async def redeem(self, ticket: str) -> Session:
        """The session a ticket was made for; the ticket is used up (GETDEL). 401 if unknown or used."""
        value = await self.redis.getdel(self.keys.ws_ticket(ticket)) if len(ticket) <= 64 else None
        if value is None:
            raise Unauthorized("ticket is unknown, used or expired", code="invalid_ticket")
        user_id, sid, expires_at = value.decode().split("|")
        device = await self._device_of(sid, user_id)
        return Session(user_id, sid, device or None, int(expires_at))

    async def renew(self, session: Session) -> TokenPair:
        """A fresh pair for a refresh: same session, its life extended."""
        await self.redis.expire(self.keys.session(session.session_id), REFRESH_TTL)
        return self.tokens.issue(session.user_id, session.session_id)

    async def end(self, user_id: str, session_ids: list[str]) -> None:
        """End these sessions: tokens refused, refresh tokens dead, sockets closed (1008)."""
        if not session_ids:
            return
        await self.store.end_sessions(user_id, session_ids, utcnow())  # first: the store has the last word
        await self.redis.delete(*(self.keys.session(sid) for sid in session_ids))
        until = time.monotonic() + ENDED_CACHE_SECONDS
        for sid in session_ids:
            self._cache[sid] = (until, _ENDED)
        await self.delivery.end_sessions(user_id, session_ids)

    async def end_all(self, user_id: str, keep: str | None = None) -> None:
        """Every session of the user (but ``keep``): log out everywhere, or after a password change."""
        sessions = await self.store.list_sessions(user_id)
        await self.end(user_id, [s["id"] for s in sessions if s["id"] != keep])

    async def end_device(self, user_id: str, device_id: str) -> None:
        """Every session bound to the device (it was revoked)."""
        sessions = await self.store.list_sessions(user_id)
        await self.end(user_id, [s["id"] for s in sessions if s["device_id"] == device_id])

    async def _device_of(self, sid: str, user_id: str) -> str:
        """"" for an unbound session, the device id for a bound one; 401 if it ended."""
        now = time.monotonic()
        cached = self._cache.get(sid)
        if cached is not None and cached[0] > now:
            state = cached[1]
        else:
            state = await self._look_up(sid, user_id)
            if len(self._cache) >= CACHE_LIMIT:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[sid] = (now + (ENDED_CACHE_SECONDS if state == _ENDED else CACHE_SECONDS), state)
        if state == _ENDED:
            raise Unauthorized("this session has ended; sign in again", code="session_ended")
        return state

    async def _look_up(self, sid: str, user_id: str) -> str:
        """Redis first; the store when Redis does not have it (and then Redis again)."""
        owner, device = await self.redis.hmget(self.keys.session(sid), "user", "device")
        if owner is not None:
            return (device or b"").decode() if owner.decode() == user_id else _ENDED
        record = await self.store.get_session(sid)
        if record is None or record["user_id"] != user_id or record["ended_at"] is not None:
            return _ENDED
        await self._remember(sid, user_id, record["device_id"])
        return record["device_id"] or ""
