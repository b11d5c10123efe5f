"""A user's rules: CRUD, the per-node cache the ingest reads, and the dry run.

The ingest never reads rules from the store: each node keeps every active
user's compiled rules with the value of the user's rules-version counter in
Redis, and re-reads that counter at most every ``CACHE_SECONDS`` (one GET,
no store round trip). A change anywhere writes the store, then bumps the
counter, so every node applies it within ``CACHE_SECONDS``.
"""
from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from typing import Any

from redis.asyncio import Redis

from notisync.core.rules import MAX_RULES, RuleSet
from notisync.errors import Conflict, NotFound
from notisync.protocol import iso
from store.documents import DocumentStore, Record, utcnow
from store.keys import Keys

CACHE_SECONDS = 0.5
CACHE_USERS = 10_000


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
        version = await self.redis.get(self.keys.rules_version(user_id))
        if cached is not None and cached[1] == version:
            rules = cached[2]
        else:
            rules = RuleSet.compile(await self.store.list_rules(user_id))
        self._cache[user_id] = (now, version, rules)
        self._cache.move_to_end(user_id)
        while len(self._cache) > CACHE_USERS:
            self._cache.popitem(last=False)
        return rules
