"""A rate limit shared by every node: GCRA in one Lua script, one key per subject.

GCRA (the "generic cell rate algorithm") is a token bucket kept as a single
number, the theoretical arrival time (TAT): when the bucket would be full
again. One key per subject, one round trip per check, and the clock is
Redis's own (``TIME``), so nodes with skewed clocks still share one limit.
The key expires once the bucket is full again, so idle subjects cost nothing.
"""
from __future__ import annotations

import math

from redis.asyncio import Redis, RedisCluster

from store.script_batch import ScriptBatcher

# KEYS: the subject's TAT key. ARGV: emission interval (ms per token), burst.
# Returns 0 if allowed (and takes a token), else the ms to wait for one.
# Under maxmemory with noeviction the SET fails (OOM): the caller answers 503
# and nothing is taken or stored.
_GCRA = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return math.ceil(wait) end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', new), 'PX', math.ceil(new - now) + 1)
return 0
"""


# KEYS: the subject's TAT key. ARGV: emission interval. Gives one token back
# (an attempt that turned out not to count, e.g. a successful login).
_GIVE_BACK = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local new = tat - tonumber(ARGV[1])
if new <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.3f', new), 'PX', math.ceil(new - now) + 1)
end
return 0
"""


class RateLimit:
    """``rate`` events per second per subject, ``burst`` at once."""

    def __init__(self, redis: "Redis | RedisCluster", rate: float, burst: float) -> None:
        self.rate = rate
        self._redis = redis
        self._interval = 1000.0 / rate if rate > 0 else 0.0
        self._burst = max(1.0, burst)
        # Checked on every post (--post-rate): the batcher's held connection
        # and shared pipeline, as for the fan-out (store/script_batch.py).
        self._script = ScriptBatcher(redis, redis.register_script(_GCRA), cluster=isinstance(redis, RedisCluster))
        self._give_back = redis.register_script(_GIVE_BACK)

    async def take(self, key: str) -> float:
        """Take one event for ``key``: 0.0 if allowed, else the seconds until one would be."""
        if not self.rate:
            return 0.0
        wait_ms = await self._script([key], [repr(self._interval), repr(self._burst)])
        return int(wait_ms) / 1000.0

    async def give_back(self, key: str) -> None:
        """Return the token the last ``take`` took (it did not count after all)."""
        if self.rate:
            await self._give_back(keys=[key], args=[repr(self._interval)])

    async def reset(self, key: str) -> None:
        """A full bucket again for ``key``."""
        if self.rate:
            await self._redis.delete(key)


def retry_after(seconds: float) -> int:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))
