"""Abuse limits on signing in: login failures and registrations per client address.

Login (``--login-rate``, default 5 failures a minute per email+address and 30
per address): every attempt takes a token from both buckets *before* the
password is checked, so a burst of concurrent guesses cannot all slip in
before the first failure is counted; a success then gives the address's token
back and clears the email+address bucket. What is left counted is failures.

Why the owner cannot be locked out: nothing is keyed on the email alone. A
stranger who fails against your email fills the bucket of *their* address for
your email, and their address's bucket; you, signing in from your own address,
use neither. (Behind a reverse proxy, ``--behind-proxy`` makes the address the
client's own rather than the proxy's.)

Both limits live in Redis (one GCRA script per check, store/ratelimit.py), so
every node shares them. If Redis is unreachable they fail open: the password
hash's cost and its concurrency gate still bound guessing.
"""
from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from notisync.errors import RateLimited
from store.keys import Keys
from store.ratelimit import RateLimit, retry_after

log = logging.getLogger(__name__)

MINUTE, HOUR = 60.0, 3600.0


class SignInLimits:
    def __init__(self, redis: Redis, keys: Keys, login_per_pair: int, login_per_address: int,
                 register_per_address: float) -> None:
        self.keys = keys
        self._pair = RateLimit(redis, login_per_pair / MINUTE, login_per_pair)
        self._address = RateLimit(redis, login_per_address / MINUTE, login_per_address)
        self._register = RateLimit(redis, register_per_address / HOUR, register_per_address)

    async def login_attempt(self, email: str, client: str) -> None:
        """Count a login attempt before its password is checked; 429 if either bucket is empty."""
        address_key = self.keys.login_address(client)
        try:
            wait = await self._address.take(address_key)
            if wait:
                raise RateLimited("too many failed logins from this address; try again later",
                                  retry_after=retry_after(wait))
            wait = await self._pair.take(self.keys.login_attempts(email, client))
            if wait:
                await self._address.give_back(address_key)  # refused here: not a guess
                raise RateLimited("too many login attempts; try again later", retry_after=retry_after(wait))
        except RedisError as exc:
            log.warning("login rate limit unavailable: %s", exc)

    async def login_succeeded(self, email: str, client: str) -> None:
        """A success is not a failure: the address gets its token back, the email+address starts over."""
        try:
            await self._address.give_back(self.keys.login_address(client))
            await self._pair.reset(self.keys.login_attempts(email, client))
        except RedisError as exc:
            log.warning("login rate limit unavailable: %s", exc)

    async def login_not_checked(self, email: str, client: str) -> None:
        """The password was never checked (the hashing gate was full): both tokens go back."""
        try:
            await self._address.give_back(self.keys.login_address(client))
            await self._pair.give_back(self.keys.login_attempts(email, client))
        except RedisError as exc:
            log.warning("login rate limit unavailable: %s", exc)

    async def register_attempt(self, client: str) -> None:
        try:
            wait = await self._register.take(self.keys.register_address(client))
        except RedisError as exc:
            log.warning("registration rate limit unavailable: %s", exc)
            return
        if wait:
            raise RateLimited("too many registrations from this address; try again later",
                              retry_after=retry_after(wait))
