"""A rate limit shared by every node: GCRA in one Lua script, one key per subject.

GCRA (the "generic cell rate algorithm") is a token bucket kept as a single
number, the theoretical arrival time (TAT): when the bucket would be full
again. One key per subject, one round trip per check, and the clock is
Redis's own (``TIME``), so nodes with skewed clocks still share one limit.
The key expires once the bucket is full again, so idle subjects cost nothing.

A subject checked on every post can take a few tokens in one call
(``reserve``) and spend the rest locally for a short lease: a steady poster
then costs Redis a fraction of a round trip per post (the check was 8.5 % of
a notification's CPU, ``bench/ab.py``). Tokens are only ever spent after
Redis granted them, so the limit still holds across every node; what a
lease leaves unspent is lost, never given twice (at most ``reserve - 1``
tokens per node and lease, and a subject posting rarely asks for one).
"""
from __future__ import annotations

import math
import time

from redis.asyncio import Redis, RedisCluster

from store.script_batch import ScriptBatcher

# KEYS: the subject's TAT key. ARGV: emission interval (ms per token), burst,
# tokens wanted. Takes as many of them as the bucket holds (at least one) and
# returns {taken, 0}, or {0, the ms to wait for one}.
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
if wait > 0 then return {0, math.ceil(wait)} end
local taken = math.min(tonumber(ARGV[3]), math.floor((tolerance - (tat - now)) / interval) + 1)
local new = tat + taken * interval
redis.call('SET', KEYS[1], string.format('%.3f', new), 'PX', math.ceil(new - now) + 1)
return {taken, 0}
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


# Seconds a node may spend tokens it took ahead; unspent ones then lapse.
LEASE = 1.0
# Leases kept before the lapsed ones are dropped (one per recently active subject).
PRUNE_AT = 10_000


class RateLimit:
    """``rate`` events per second per subject, ``burst`` at once.

    ``reserve`` > 1: a call may take up to that many tokens, one more than
    the subject spent in its last lease, and spend the others locally.
    """

    def __init__(self, redis: "Redis | RedisCluster", rate: float, burst: float, reserve: int = 1) -> None:
        self.rate = rate
        self._redis = redis
        self._interval = 1000.0 / rate if rate > 0 else 0.0
        self._burst = max(1.0, burst)
        self._reserve = max(1, reserve)
        # key -> [tokens left, lease end (monotonic), tokens spent in this lease]
        self._leases: dict[str, list[float]] = {}
        self._prune_at = PRUNE_AT
        # Checked on every post (--post-rate): the batcher's held connection
        # and shared pipeline, as for the fan-out (store/script_batch.py).
        self._script = ScriptBatcher(redis, redis.register_script(_GCRA), cluster=isinstance(redis, RedisCluster))
        self._give_back = redis.register_script(_GIVE_BACK)

    async def take(self, key: str) -> float:
        """Take one event for ``key``: 0.0 if allowed, else the seconds until one would be."""
        if not self.rate:
            return 0.0
        now = time.monotonic()
        lease = self._leases.get(key)
        if lease is not None and lease[0] >= 1 and lease[1] > now:
            lease[0] -= 1
            lease[2] += 1
            return 0.0
        # A subject that spent n tokens in a lease that just ended asks for n + 1.
        want = 1 if lease is None or lease[1] < now - LEASE else min(self._reserve, int(lease[2]) + 1)
        taken, wait_ms = await self._script([key], [repr(self._interval), repr(self._burst), want])
        if not taken:
            return int(wait_ms) / 1000.0
        if self._reserve > 1:
            if len(self._leases) >= self._prune_at:
                self._prune(now)
            self._leases[key] = [float(int(taken) - 1), now + LEASE, 1.0]
        return 0.0

    def _prune(self, now: float) -> None:
        for key in [k for k, lease in self._leases.items() if lease[1] < now - LEASE]:
            del self._leases[key]
        # With that many subjects active at once, look again only once they have doubled.
        self._prune_at = max(PRUNE_AT, 2 * len(self._leases))

    async def give_back(self, key: str) -> None:
        """Return the token the last ``take`` took (it did not count after all)."""
        if self.rate:
            await self._give_back(keys=[key], args=[repr(self._interval)])

    async def reset(self, key: str) -> None:
        """A full bucket again for ``key``."""
        if self.rate:
            self._leases.pop(key, None)
            await self._redis.delete(key)


def retry_after(seconds: float) -> int:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))
