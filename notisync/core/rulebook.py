"""A user's rules: CRUD, the per-node cache the ingest reads, and the dry run.

The ingest never reads rules from the store: each node keeps every active
user's compiled rules with the value of the user's rules-version counter in
Redis, and re-reads that counter at most every ``CACHE_SECONDS`` (one MGET
for the user and other active users whose check is half due; no store
round trip). A change anywhere writes the store, then bumps the
counter, so every node applies it within ``CACHE_SECONDS``.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from typing import Any

from redis.asyncio import Redis, RedisCluster

from notisync.core.rules import MAX_RULES, RuleSet
from notisync.errors import Conflict, NotFound
from notisync.protocol import iso
from store.documents import DocumentStore, Record, utcnow
from store.keys import Keys

CACHE_SECONDS = 0.5
CACHE_USERS = 10_000
# A check that is due re-reads, in the same MGET, the counters of up to
# RIDE_ALONG_MAX recently used users whose entries are at least this old
# (looking at no more than RIDE_ALONG_SCAN of the most recently used).
RIDE_ALONG_SECONDS = CACHE_SECONDS / 2
RIDE_ALONG_MAX = 256
RIDE_ALONG_SCAN = 1024


def rule_view(rule: Record) -> dict[str, Any]:
    return {
        "id": rule["id"], "name": rule.get("name", ""), "enabled": bool(rule.get("enabled", True)),
        "position": rule["position"], "match": rule.get("match") or {}, "action": rule.get("action") or {},
        "created_at": iso(rule.get("created_at")),
    }


class RuleService:
    def __init__(self, store: DocumentStore, redis: Redis, keys: Keys, limit: int = MAX_RULES) -> None:
        self.store = store
        self.redis = redis
        self.keys = keys
        self.limit = limit
        # user id -> (checked at, counter value, compiled rules)
        self._cache: OrderedDict[str, tuple[float, bytes | None, RuleSet]] = OrderedDict()
        self._checks: dict[str, asyncio.Future[None]] = {}  # user -> the MGET in flight re-reading its counter

    async def list(self, user_id: str) -> list[dict[str, Any]]:
        return [rule_view(r) for r in await self.store.list_rules(user_id)]

    async def create(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        rule = {"id": str(uuid.uuid4()), "user_id": user_id, "created_at": utcnow(), **data}
        made = await self.store.create_rule(rule, self.limit)
        if made is None:
            raise Conflict(f"at most {self.limit} rules per user", code="too_many_rules")
        await self._changed(user_id)
        return rule_view(made)

    async def update(self, user_id: str, rule_id: str, data: dict[str, Any]) -> dict[str, Any]:
        rule = await self.store.update_rule(user_id, rule_id, data)
        if rule is None:
            raise NotFound("rule not found", code="rule_not_found")
        await self._changed(user_id)
        return rule_view(rule)

    async def delete(self, user_id: str, rule_id: str) -> None:
        if not await self.store.delete_rule(user_id, rule_id):
            raise NotFound("rule not found", code="rule_not_found")
        await self._changed(user_id)

    async def _changed(self, user_id: str) -> None:
        await self.redis.incr(self.keys.rules_version(user_id))
        self._cache.pop(user_id, None)

    async def ruleset(self, user_id: str) -> RuleSet:
        """The user's compiled enabled rules, at most CACHE_SECONDS behind any change."""
        now = time.monotonic()
        cached = self._cache.get(user_id)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[2]
        check = self._checks.get(user_id)
        if check is not None:
            # A check re-reading this user's counter is out (its own or one it
            # rides along): wait for it rather than send another. At saturation
            # every post of a user whose check was due sent its own MGET while
            # the first was out, ~1 post in 5 paying a Redis round trip.
            await asyncio.shield(check)
            cached = self._cache.get(user_id)
            if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
                return cached[2]
        return await self._check(user_id, cached, now)

    async def _check(self, user_id: str, cached: tuple[float, bytes | None, RuleSet] | None,
                     now: float) -> RuleSet:
        """Re-read the user's counter (and, riding along, others' half-due ones); reload its rules if moved."""
        others = self._due(user_id, now)
        check = asyncio.get_running_loop().create_future()
        # Marked while their MGET is out, so concurrent checks (many, at
        # saturation) do not each carry the same hundreds of keys again,
        # and posts of these users wait for it.
        for user in (user_id, *others):
            self._checks[user] = check
        try:
            keys = [self.keys.rules_version(u) for u in (user_id, *others)]
            # Each user's counter sits in the user's slot: on a cluster the
            # read is split by slot (one MGET per shard), atomic per slot only.
            versions = await (self.redis.mget_nonatomic(keys) if isinstance(self.redis, RedisCluster)
                              else self.redis.mget(keys))
            version = versions[0]
            self._rode_along(others, versions[1:], now)
            if cached is not None and cached[1] == version:
                rules = cached[2]
            else:
                rules = RuleSet.compile(await self.store.list_rules(user_id))
            self._cache[user_id] = (now, version, rules)
            self._cache.move_to_end(user_id)
            while len(self._cache) > CACHE_USERS:
                self._cache.popitem(last=False)
            return rules
        finally:
            # Waiters go on either way: on a failure each makes its own check (and meets the error).
            for user in (user_id, *others):
                if self._checks.get(user) is check:
                    del self._checks[user]
            check.set_result(None)

    def _due(self, user_id: str, now: float) -> list[str]:
        """Recently used users whose check is half due: re-read in the same MGET.

        At 500 notifications/s over 200 users nearly every post found its
        user's check due and paid a GET round trip of its own (5 % of the
        loop in the profile); riding along, a few MGETs a second check them
        all. Each entry still holds the time its counter was read, so no
        user's rules are ever more than CACHE_SECONDS behind.
        """
        due: list[str] = []
        for seen, other in enumerate(reversed(self._cache)):  # most recently used first
            if seen >= RIDE_ALONG_SCAN or len(due) >= RIDE_ALONG_MAX:
                break
            if other != user_id and other not in self._checks and now - self._cache[other][0] >= RIDE_ALONG_SECONDS:
                due.append(other)
        return due

    def _rode_along(self, users: list[str], versions: list[bytes | None], read_at: float) -> None:
        for other, version in zip(users, versions):
            entry = self._cache.get(other)
            if entry is None or entry[0] >= read_at:
                continue  # gone, or re-read meanwhile by a later check
            if entry[1] == version:
                self._cache[other] = (read_at, version, entry[2])  # its place in the LRU order stays
            else:
                del self._cache[other]  # changed: its next post reloads the rules
