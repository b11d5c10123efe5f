"""Presence: which devices have a live socket anywhere, counted across nodes.

One sorted set per user; each live socket is a member ``device|node|conn``
scored with the time (ms) it expires unless its node refreshes it. A node
that dies stops refreshing, so its sockets vanish within the TTL. Each step
that can change a device's online state is one Lua script, so the answer to
"was this the first/last socket of the device?" is never a race between nodes.
"""
from __future__ import annotations

import asyncio

import time
from typing import Any

from redis.asyncio import Redis, RedisCluster

from store.keys import Keys

# Shared helper: is any live member left for device ARGV[1]? Members are
# few per user (one per socket), so scanning them is cheap.
_HAS_DEVICE = """
local function has_device(key, device, now)
  local prefix = device .. '|'
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, now, '+inf')) do
    if string.sub(m, 1, #prefix) == prefix then return true end
  end
  return false
end
"""

# KEYS[1] presence; ARGV: device, member, now, expiry, key ttl ms -> 1 if the device was offline
_ADD = _HAS_DEVICE + """
local was = has_device(KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if was then return 0 else return 1 end
"""

# KEYS[1] presence; ARGV: device, member, now -> 1 if the device is now offline
_REMOVE = _HAS_DEVICE + """
local removed = redis.call('ZREM', KEYS[1], ARGV[2])
if removed == 0 then return 0 end
if has_device(KEYS[1], ARGV[1], ARGV[3]) then return 0 else return 1 end
"""

# KEYS[1] presence; ARGV: now, expiry, key ttl ms, member... -> devices whose
# sockets all expired (their node died) and that are now offline.
REFRESH_CHUNK = 200  # users per pipeline in the heartbeat's refresh

_REFRESH = _HAS_DEVICE + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for i = 4, #ARGV do redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i]) end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local gone, seen = {}, {}
for _, m in ipairs(expired) do
  local device = string.match(m, '^([^|]*)|')
  if device and not seen[device] then
    seen[device] = true
    if not has_device(KEYS[1], device, ARGV[1]) then table.insert(gone, device) end
  end
end
return gone
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class Presence:
    def __init__(self, redis: "Redis | RedisCluster", keys: Keys, ttl_seconds: float, cluster: bool = False) -> None:
        self._redis = redis
        self._cluster = cluster  # no scripts in a cluster pipeline (redis-py refuses them)
        self._keys = keys
        self._ttl_ms = int(ttl_seconds * 1000)
        self._add = redis.register_script(_ADD)
        self._remove = redis.register_script(_REMOVE)
        self._refresh = redis.register_script(_REFRESH)

    @staticmethod
    def member(device_id: str, node_id: str, conn_id: str) -> str:
        return f"{device_id}|{node_id}|{conn_id}"

    async def add(self, user_id: str, device_id: str, member: str) -> bool:
        """Register a socket; True if it is the device's first live one."""
        now = _now_ms()
        first = await self._add(
            keys=[self._keys.presence(user_id)],
            args=[device_id, member, now, now + self._ttl_ms, 2 * self._ttl_ms],
        )
        return bool(first)

    async def remove(self, user_id: str, device_id: str, member: str) -> bool:
        """Unregister a socket; True if the device has no live socket left."""
        last = await self._remove(
            keys=[self._keys.presence(user_id)], args=[device_id, member, _now_ms()]
        )
        return bool(last)

    async def refresh(self, members_by_user: dict[str, list[str]]) -> dict[str, list[str]]:
        """Extend this node's sockets; return user -> devices found dead elsewhere."""
        now = _now_ms()
        users = list(members_by_user)
        gone: dict[str, list[str]] = {}
        # One pipeline per chunk, not per node: encoding and parsing thousands
        # of script calls in one go stalls the event loop for tens of ms.
        for start in range(0, len(users), REFRESH_CHUNK):
            chunk = users[start:start + REFRESH_CHUNK]
            results = await self._refresh_chunk(chunk, members_by_user, now)
            gone.update({u: [d.decode() for d in dead] for u, dead in zip(chunk, results) if dead})
        return gone

    async def _refresh_chunk(self, chunk: list[str], members_by_user: dict[str, list[str]], now: int) -> list[Any]:
        calls = [([self._keys.presence(user_id)], [now, now + self._ttl_ms, 2 * self._ttl_ms, *members_by_user[user_id]])
                 for user_id in chunk]
        if self._cluster:  # each user's key on its own shard: calls side by side
            return list(await asyncio.gather(*(self._refresh(keys=k, args=a) for k, a in calls)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                await self._refresh(keys=keys, args=args, client=pipe)
            return list(await pipe.execute())

    async def online_devices(self, user_id: str) -> set[str]:
        members = await self._redis.zrangebyscore(self._keys.presence(user_id), _now_ms(), "+inf")
        return {m.decode().split("|", 1)[0] for m in members}

    async def connection_count(self, user_id: str) -> int:
        return int(await self._redis.zcount(self._keys.presence(user_id), _now_ms(), "+inf"))

    async def drop_user(self, user_id: str) -> None:
        """Forget every socket of a deleted account."""
        await self._redis.delete(self._keys.presence(user_id))

    async def drop_device(self, user_id: str, device_id: str) -> None:
        """Forget every socket of a revoked device."""
        key = self._keys.presence(user_id)
        members = await self._redis.zrange(key, 0, -1)
        stale = [m for m in members if m.decode().startswith(device_id + "|")]
        if stale:
            await self._redis.zrem(key, *stale)
