"""Per-device sync streams in Redis: append + publish, read after a position.

Every message meant for a device is appended to that device's own stream
(newest ``MAXLEN`` kept, entries older than ``RETENTION_MS`` trimmed on read).
Each entry records the id of the entry before it (``p``), so a reader that
knows the last id it delivered can tell "the next entry follows mine" from
"entries in between were trimmed" without any other bookkeeping.

Appending to all recipients' streams and publishing the wake-up to the
user's channel happen in one Lua script: one round trip, and no reader can
see the publication before the entries exist.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from store.keys import Keys
from store.script_batch import ScriptBatcher

MAXLEN = 1000
RETENTION_MS = 7 * 24 * 3600 * 1000
ZERO = "0-0"

# KEYS: epoch, device-list version, marker, then (stream, last id) per device.
# ARGV: epoch, maxlen, channel, node id, body, version, marker TTL
# (seconds; 0 = no marker), silent body ("" = none), one flag per device
# ("1": that device gets the silent body), device ids.
# The wake-up it publishes is the NewEntries event of notisync/delivery/events.py:
# {"n": node id, "k": "m", "e": {device: [previous id, new id]}} "\n" body,
# once per body that some device got (so at most two publications).
# The version check makes a node's cached device list safe: a device created
# or revoked anywhere bumps the counter first, so a stale list appends nothing.
# (A device's preferences share the counter: the per-device choice of body
# and of recipients is made from the list the version vouches for.)
# The marker makes a notification's fan-out happen once: it is checked before
# anything else and set with the appends, atomically, so a second attempt
# (a retry, the sweeper, another node) appends nothing and answers DONE.
# Each append also sets the stream and its last-id key to expire RETENTION_MS
# after it: a device that never comes back leaves nothing behind for longer
# (everything in them would be trimmed on read by then anyway).
_FANOUT = """
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then return redis.error_reply('EPOCH mismatch') end
local ttl = tonumber(ARGV[7])
if ttl > 0 and redis.call('EXISTS', KEYS[3]) == 1 then return 'DONE' end
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[6] then return 'STALE' end
local flags = ARGV[9]
local parts, quiet, ids, n = {}, {}, {}, 0
for i = 4, #KEYS, 2 do
  n = n + 1
  local body = ARGV[5]
  local mute = string.sub(flags, n, n) == '1'
  if mute then body = ARGV[8] end
  local prev = redis.call('GET', KEYS[i + 1]) or '0-0'
  local id = redis.call('XADD', KEYS[i], 'MAXLEN', ARGV[2], '*', 'p', prev, 'b', body)
  redis.call('SET', KEYS[i + 1], id, 'PX', RETENTION_MS)
  redis.call('PEXPIRE', KEYS[i], RETENTION_MS)
  ids[2 * n - 1] = prev
  ids[2 * n] = id
  local part = '"' .. ARGV[9 + n] .. '":["' .. prev .. '","' .. id .. '"]'
  if mute then quiet[#quiet + 1] = part else parts[#parts + 1] = part end
end
if ttl > 0 then redis.call('SET', KEYS[3], '1', 'EX', ttl) end
local head = '{"n":"' .. ARGV[4] .. '","k":"m","e":{'
if #parts > 0 then
  redis.call('PUBLISH', ARGV[3], head .. table.concat(parts, ',') .. '}}\\n' .. ARGV[5])
end
if #quiet > 0 then
  redis.call('PUBLISH', ARGV[3], head .. table.concat(quiet, ',') .. '}}\\n' .. ARGV[8])
end
return ids
""".replace("RETENTION_MS", str(RETENTION_MS))

# KEYS: epoch, then one cursor key per device; ARGV: epoch, then the ids.
# One script for every cursor: a pipeline of one call per device cost the
# event loop ~20 ms per 800 devices every second, a visible latency spike.
_SAVE_CURSORS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local saved = 0
for i = 2, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  local newer = true
  if cur then
    local cm, cs = string.match(cur, '(%d+)-(%d+)')
    local nm, ns = string.match(ARGV[i], '(%d+)-(%d+)')
    cm, cs, nm, ns = tonumber(cm), tonumber(cs), tonumber(nm), tonumber(ns)
    newer = nm > cm or (nm == cm and ns > cs)
  end
  if newer then
    redis.call('SET', KEYS[i], ARGV[i])
    saved = saved + 1
  end
end
return saved
"""
# Devices per script call: bounds how long one call holds Redis.
SAVE_CHUNK = 1000
# How long a notification's "fanned out" marker lives. It must outlast the
# window in which the notification can still be pending in the store (a few
# seconds, unless every node is down that long); it costs ~100 bytes each.
MARKER_TTL = 600


class EpochMismatch(Exception):
    """Redis no longer holds the epoch this node knows: its data was lost."""


class StaleDevices(Exception):
    """The device-list version given to ``append`` is no longer current."""


def parse_id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq)


def is_stream_id(value: str) -> bool:
    ms, sep, seq = value.partition("-")
    return bool(sep) and ms.isdigit() and seq.isdigit() and len(value) <= 41


@dataclass(frozen=True)
class Entry:
    id: str
    prev: str
    body: bytes


@dataclass(frozen=True)
class ReadResult:
    entries: list[Entry]
    last: str  # newest id ever appended to the stream (ZERO if none)


class Streams:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        # Concurrent fan-outs share one pipeline (see store/script_batch.py).
        self._fanout = ScriptBatcher(redis, redis.register_script(_FANOUT))
        self._save_cursors = redis.register_script(_SAVE_CURSORS)

    async def ensure_epoch(self) -> str:
        """The current epoch, created if Redis has none (first start, or data lost)."""
        await self._redis.set(self._keys.epoch, str(int(time.time() * 1000)), nx=True)
        value = await self._redis.get(self._keys.epoch)
        return value.decode()

    async def append(
        self, epoch: str, user_id: str, version: int, device_ids: list[str], node_id: str, body: bytes,
        once_for: str | None = None, silent_body: bytes | None = None, silent: frozenset[str] = frozenset(),
    ) -> dict[str, tuple[str, str]] | None:
        """Append ``body`` to each device's stream and wake the user's channel.

        ``version`` is the user's device-list version the caller's list was
        read at; ``node_id`` goes into the wake-up so that node can skip its
        own. Returns device id -> (previous id, new id). Raises
        EpochMismatch if Redis lost its data since this node read the epoch,
        StaleDevices (having appended nothing) if the device list changed.
        With ``once_for`` (a notification id), only the first successful
        call appends; any later one returns None and appends nothing.
        The devices in ``silent`` get ``silent_body`` instead of ``body``.
        """
        marker = self._keys.fanout(once_for) if once_for else self._keys.epoch
        keys = [self._keys.epoch, self._keys.device_version(user_id), marker]
        for device_id in device_ids:
            keys += [self._keys.stream(device_id), self._keys.last(device_id)]
        ttl = MARKER_TTL if once_for else 0
        flags = "".join("1" if d in silent else "0" for d in device_ids) if silent_body is not None else ""
        args = [epoch, MAXLEN, self._keys.user_channel(user_id), node_id, body, version, ttl,
                silent_body or b"", flags, *device_ids]
        try:
            ids = await self._fanout(keys, args)
        except ResponseError as exc:
            if "EPOCH" in str(exc):
                raise EpochMismatch() from None
            raise
        if ids == b"STALE":
            raise StaleDevices()
        if ids == b"DONE":
            return None
        pairs = [x.decode() for x in ids]
        return {d: (pairs[2 * n], pairs[2 * n + 1]) for n, d in enumerate(device_ids)}

    async def cancel_once(self, notification_id: str) -> bool:
        """Make every later ``append(..., once_for=notification_id)`` append nothing.

        True if no append for it had happened (now none ever will); False if
        one already did.
        """
        return bool(await self._redis.set(self._keys.fanout(notification_id), "0", nx=True, ex=MARKER_TTL))

    async def device_version(self, user_id: str) -> int:
        value = await self._redis.get(self._keys.device_version(user_id))
        return int(value) if value else 0

    async def drop_device_version(self, user_id: str) -> None:
        """A deleted account's counter (a new account never reuses a user id)."""
        await self._redis.delete(self._keys.device_version(user_id))

    async def bump_device_version(self, user_id: str) -> None:
        """Make every node's cached device list of the user stale (INCR creates it at 1)."""
        await self._redis.incr(self._keys.device_version(user_id))

    async def read_after(self, device_id: str, after: str, count: int) -> ReadResult:
        """Entries strictly after ``after``, oldest first, at most ``count``.

        Entries past the retention window are trimmed first, so what is
        returned is exactly what a device may still be given.
        """
        cutoff = f"{int(time.time() * 1000) - RETENTION_MS}-0"
        stream = self._keys.stream(device_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xtrim(stream, minid=cutoff, approximate=False)
            pipe.xrange(stream, min=f"({after}", max="+", count=count)
            pipe.get(self._keys.last(device_id))
            _, rows, last = await pipe.execute()
        entries = [Entry(i.decode(), f[b"p"].decode(), f[b"b"]) for i, f in rows]
        return ReadResult(entries, last.decode() if last else ZERO)

    async def last_id(self, device_id: str) -> str:
        value = await self._redis.get(self._keys.last(device_id))
        return value.decode() if value else ZERO

    async def load_cursor(self, device_id: str) -> str | None:
        value = await self._redis.get(self._keys.cursor(device_id))
        return value.decode() if value else None

    async def save_cursors(self, epoch: str, cursors: dict[str, str]) -> None:
        """Advance stored cursors (never backwards; ignored if the epoch changed)."""
        if not cursors:
            return
        items = list(cursors.items())
        for start in range(0, len(items), SAVE_CHUNK):
            chunk = items[start : start + SAVE_CHUNK]
            await self._save_cursors(
                keys=[self._keys.epoch, *(self._keys.cursor(device_id) for device_id, _ in chunk)],
                args=[epoch, *(stream_id for _, stream_id in chunk)],
            )

    async def drop(self, device_id: str) -> None:
        await self._redis.delete(
            self._keys.stream(device_id), self._keys.last(device_id), self._keys.cursor(device_id)
        )
