"""Device API keys: a long-lived credential for a phone or an automation app.

Such clients cannot refresh tokens, so a key is a session bound to its
device that does not expire (SPEC "Phones, bulk actions, counts"). Each key
*is* a session: the key's id is the session's id, so revoking the key (or
the device, or logging out everywhere) ends it exactly like any session —
every node refuses it within ``sessions.CACHE_SECONDS`` and its open sockets
close with 1008 (``core/sessions.py``).

Only a SHA-256 of the key is stored. The key carries 256 random bits, so a
fast unsalted hash is enough: nobody can search that space, and the lookup
by hash stays one indexed read. A node keeps hash -> (user, session) in
memory (that pair never changes for a key), with Redis as the shared cache
in front of the store; whether the session is still going is the session
check every token gets, so the hot path costs the same as an access token.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from notisync.core.devices import DeviceService
from notisync.core.sessions import API_KEY_PREFIX, SessionService
from notisync.errors import Conflict, NotFound, Unauthorized
from notisync.views import api_key_view
from store.documents import DocumentStore, utcnow
from store.keys import Keys

PREFIX = API_KEY_PREFIX  # recognisable in a config file or a leaked log, and never a JWT (those start "ey")
MAX_PER_DEVICE = 10
TOUCH_SECONDS = 60.0  # last_used_at is written at most this often per key and node
REDIS_TTL = 30 * 24 * 3600  # the shared hash -> owner cache; the store has the last word
CACHE_LIMIT = 100_000
UNKNOWN_SECONDS = 60.0  # a hash no key has: a random key is never created later, so any time is safe


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


log = logging.getLogger(__name__)


class ApiKeyService:
    def __init__(
        self, store: DocumentStore, redis: Redis, keys: Keys, sessions: SessionService, devices: DeviceService,
    ) -> None:
        self.store = store
        self.redis = redis
        self.keys = keys
        self.sessions = sessions
        self.devices = devices
        self._owners: dict[str, tuple[str, str, str]] = {}  # key hash -> (user, key id = session id, device)
        self._touched: dict[str, float] = {}  # key id -> when this node may write last_used_at again
        self._unknown: dict[str, float] = {}  # hash -> until when it is refused without a lookup

    async def create(self, user_id: str, device_id: str, name: str | None) -> dict[str, Any]:
        """A new key for a live device of the user: the only time the key itself is shown."""
        await self.devices.require_live(user_id, device_id)
        # Counted before the insert (like --max-devices): two concurrent
        # creates can pass one over; the bound holds to within that.
        if len(await self._live_keys(user_id, device_id)) >= MAX_PER_DEVICE:
            raise Conflict(f"a device may have at most {MAX_PER_DEVICE} API keys; revoke one first",
                           code="too_many_api_keys")
        key = PREFIX + secrets.token_urlsafe(32)
        record = {
            "id": str(uuid.uuid4()), "user_id": user_id, "device_id": device_id, "name": name,
            "key_hash": hash_key(key), "created_at": utcnow(), "last_used_at": None,
        }
        # The session first: a key whose session failed to start would be a
        # key that never works; a session without its key is never presented.
        await self.sessions.start_with_id(record["id"], user_id, device_id)
        await self.store.create_api_key(record)
        view = api_key_view(record)
        return {"id": view["id"], "name": view["name"], "key": key, "created_at": view["created_at"]}

    async def list(self, user_id: str, device_id: str) -> list[dict[str, Any]]:
        await self.devices.require_live(user_id, device_id)
        return [api_key_view(r) for r in await self._live_keys(user_id, device_id)]

    async def revoke(self, user_id: str, device_id: str, key_id: str) -> None:
        await self.devices.require_live(user_id, device_id)
        if not await self.store.delete_api_key(user_id, device_id, key_id):
            raise NotFound("API key not found", code="api_key_not_found")
        await self.sessions.end(user_id, [key_id])

    async def _live_keys(self, user_id: str, device_id: str) -> list[dict[str, Any]]:
        """The device's keys whose session still runs (logout-all and a password change end keys too)."""
        keys = await self.store.list_api_keys(user_id, device_id)
        if not keys:
            return []
        live = {s["id"] for s in await self.store.list_sessions(user_id)}
        return [k for k in keys if k["id"] in live]

    async def resolve(self, key: str) -> tuple[str, str, str]:
        """(user id, key id = session id, device id) of a key, else 401.

        Whether its session still runs is the caller's check (``SessionService.verify``)."""
        digest = hash_key(key)
        owner = self._owners.get(digest)
        if owner is None:
            now = time.monotonic()
            if self._unknown.get(digest, 0.0) > now:  # guessing keys costs no Redis or store read
                raise Unauthorized("unknown or revoked API key", code="invalid_token")
            try:
                owner = await self._look_up(digest)
            except Unauthorized:
                if len(self._unknown) >= CACHE_LIMIT:
                    self._unknown = {k: v for k, v in self._unknown.items() if v > now}
                self._unknown[digest] = now + UNKNOWN_SECONDS
                raise
            if len(self._owners) >= CACHE_LIMIT:
                self._owners.clear()
            self._owners[digest] = owner
        return owner

    async def _look_up(self, digest: str) -> tuple[str, str, str]:
        cached = await self.redis.get(self.keys.api_key(digest))
        if cached is not None:
            user_id, key_id, device_id = cached.decode().split("|")
            return user_id, key_id, device_id
        record = await self.store.get_api_key(digest)
        if record is None:
            raise Unauthorized("unknown or revoked API key", code="invalid_token")
        owner = (record["user_id"], record["id"], record["device_id"])
        await self.redis.set(self.keys.api_key(digest), "|".join(owner), ex=REDIS_TTL)
        return owner

    async def used(self, user_id: str, key_id: str, device_id: str) -> None:
        """last_used_at, and the device's last_seen (a phone that only posts is still seen), throttled."""
        now = time.monotonic()
        if self._touched.get(key_id, 0.0) > now:
            return
        if len(self._touched) >= CACHE_LIMIT:
            self._touched = {k: v for k, v in self._touched.items() if v > now}
        self._touched[key_id] = now + TOUCH_SECONDS
        try:
            stamp = utcnow()
            await self.store.touch_api_key(key_id, stamp)
            await self.store.update_device(user_id, device_id, {"last_seen": stamp})
        except Exception as exc:  # bookkeeping: never worth failing the request over
            log.warning("could not record the use of API key %s: %s", key_id, exc)
