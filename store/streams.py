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
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.cluster import key_slot
from redis.exceptions import ResponseError

from store.keys import Keys
from store.script_batch import ScriptBatcher

MAXLEN = 1000
RETENTION_MS = 7 * 24 * 3600 * 1000
ZERO = "0-0"

# KEYS: the user's epoch, device-list version, marker, presence, then (stream,
# last id) per device: all under the user's hash tag, so one cluster slot.
# ARGV: epoch, maxlen, channel, node id, body, version, marker TTL
# (seconds; 0 = no marker), silent body ("" = none), one flag per device
# ("1": that device gets the silent body), the publish command (PUBLISH, or
# SPUBLISH on a cluster: the channel is in the user's slot), device ids.
# The wake-up it publishes is the NewEntries event of notisync/delivery/events.py:
# {"n": node id, "k": "m", "e": {device: [previous id, new id]}} "\n" body,
# once per body that some device got (so at most two publications).
# It is published only if the user's presence (store/presence.py: members
# device|node|conn) holds a socket of another node: the calling node
# delivers to its own sockets from the reply, so on one node, or for a user
# whose sockets are all on the calling node, a wake-up would only come back
# to be skipped. Safe because a node registers a socket's presence after
# its subscription is confirmed and before it reads the stream
# (notisync/delivery/replay.py): a socket whose presence this script does
# not see reads the stream after these appends. Members past their expiry
# still count (a stale one costs a publication, never a wake-up), and a
# member that does not parse counts as another node.
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
for i = 5, #KEYS, 2 do
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
  local part = '"' .. ARGV[10 + n] .. '":["' .. prev .. '","' .. id .. '"]'
  if mute then quiet[#quiet + 1] = part else parts[#parts + 1] = part end
end
if ttl > 0 then redis.call('SET', KEYS[3], '1', 'EX', ttl) end
local elsewhere = false
for _, m in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  if string.match(m, '^[^|]*|([^|]*)|') ~= ARGV[4] then elsewhere = true break end
end
ids[#ids + 1] = elsewhere and '1' or '0'  -- last: whether it published
if not elsewhere then return ids end
local head = '{"n":"' .. ARGV[4] .. '","k":"m","e":{'
if #parts > 0 then
  redis.call(ARGV[10], ARGV[3], head .. table.concat(parts, ',') .. '}}\\n' .. ARGV[5])
end
if #quiet > 0 then
  redis.call(ARGV[10], ARGV[3], head .. table.concat(quiet, ',') .. '}}\\n' .. ARGV[8])
end
return ids
""".replace("RETENTION_MS", str(RETENTION_MS))

# KEYS: per user, its epoch then its devices' cursor keys. ARGV: per user,
# how many cursors, its epoch, then the ids. A user whose epoch changed
# (Redis lost its data) is skipped. One script for many cursors: a pipeline of
# one call per device cost the event loop ~20 ms per 800 devices every second.
_SAVE_CURSORS = """
local saved, k, a = 0, 1, 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local current = redis.call('GET', KEYS[k]) == ARGV[a + 1]
  for i = 1, n do
    local key, new = KEYS[k + i], ARGV[a + 1 + i]
    local cur = current and redis.call('GET', key)
    local newer = current
    if cur then
      local cm, cs = string.match(cur, '(%d+)-(%d+)')
      local nm, ns = string.match(new, '(%d+)-(%d+)')
      cm, cs, nm, ns = tonumber(cm), tonumber(cs), tonumber(nm), tonumber(ns)
      newer = nm > cm or (nm == cm and ns > cs)
    end
    if newer then
      redis.call('SET', key, new)
      saved = saved + 1
    end
  end
  k, a = k + n + 1, a + n + 2
end
return saved
"""
# KEYS: the user's epoch, then any keys of the user to read with it.
# ARGV: a new epoch (now, ms), set only if the user has none (first use, or
# Redis lost the user's data). Returns the values of KEYS, epoch first.
_READ_WITH_EPOCH = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('MGET', unpack(KEYS))
"""
# Devices per script call: bounds how long one call holds Redis.
SAVE_CHUNK = 1000
# How long a notification's "fanned out" marker lives. It must outlast the
# window in which the notification can still be pending in the store (a few
# seconds, unless every node is down that long); it costs ~100 bytes each.
MARKER_TTL = 600


class Appended(dict[str, tuple[str, str]]):
    """device id -> (previous id, new id) of one fan-out, and whether its wake-up was published."""

    published: bool = False


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
    def __init__(self, redis: "Redis | RedisCluster", keys: Keys, wait_replicas: int = 0, cluster: bool = False,
                 linger: float = 0.0) -> None:
        self._redis = redis
        self._keys = keys
        self._cluster = cluster
        self._publish = "SPUBLISH" if cluster else "PUBLISH"
        # Concurrent fan-outs share one pipeline (see store/script_batch.py);
        # wait_replicas: it ends with WAIT (--redis-wait); linger: see store/batching.py.
        self._fanout = ScriptBatcher(redis, redis.register_script(_FANOUT), wait_replicas=wait_replicas,
                                     cluster=cluster, linger=linger)
        self._save_cursors = redis.register_script(_SAVE_CURSORS)
        self._read_with_epoch = redis.register_script(_READ_WITH_EPOCH)

    async def _with_epoch(self, user_id: str, *keys: str) -> list[str | None]:
        """The user's epoch (created if Redis has none: first use, or its data was lost) and ``keys``' values."""
        values = await self._read_with_epoch(keys=[self._keys.epoch(user_id), *keys],
                                             args=[int(time.time() * 1000)])
        return [v.decode() if v is not None else None for v in values]

    async def ensure_epoch(self, user_id: str) -> str:
        """The user's current epoch: when the stream data Redis holds for the user began (ms)."""
        (epoch,) = await self._with_epoch(user_id)
        assert epoch is not None  # the script just set it if missing
        return epoch

    async def user_state(self, user_id: str) -> tuple[str, int]:
        """The user's epoch and device-list version, read together."""
        epoch, version = await self._with_epoch(user_id, self._keys.device_version(user_id))
        assert epoch is not None
        return epoch, int(version) if version else 0

    async def device_state(self, user_id: str, device_id: str) -> tuple[str, str, str | None]:
        """The user's epoch, the device's newest stream id (ZERO if none) and its saved cursor (None if none)."""
        epoch, last, cursor = await self._with_epoch(
            user_id, self._keys.last(user_id, device_id), self._keys.cursor(user_id, device_id))
        assert epoch is not None
        return epoch, last or ZERO, cursor

    async def append(
        self, epoch: str, user_id: str, version: int, device_ids: list[str], node_id: str, body: bytes,
        once_for: str | None = None, silent_body: bytes | None = None, silent: frozenset[str] = frozenset(),
    ) -> Appended | None:
        """Append ``body`` to each device's stream and wake the user's channel.

        ``epoch`` and ``version`` are the user's epoch and device-list version
        the caller's list was read at (``user_state``); ``node_id`` goes into
        the wake-up, which is published only if another node holds a socket
        of the user (the caller wakes its own from the reply). Returns device id ->
        (previous id, new id). Raises EpochMismatch if Redis lost the user's
        data since, StaleDevices (having appended nothing) if the device list
        changed. With ``once_for`` (a notification id), only the first
        successful call appends; any later one returns None and appends nothing.
        The devices in ``silent`` get ``silent_body`` instead of ``body``.
        """
        keys_ = self._keys
        epoch_key = keys_.epoch(user_id)
        marker = keys_.fanout(user_id, once_for) if once_for else epoch_key
        keys = [epoch_key, keys_.device_version(user_id), marker, keys_.presence(user_id)]
        for device_id in device_ids:
            keys += [keys_.stream(user_id, device_id), keys_.last(user_id, device_id)]
        ttl = MARKER_TTL if once_for else 0
        flags = "".join("1" if d in silent else "0" for d in device_ids) if silent_body is not None else ""
        args = [epoch, MAXLEN, keys_.user_channel(user_id), node_id, body, version, ttl,
                silent_body or b"", flags, self._publish, *device_ids]
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
        appended = Appended({d: (pairs[2 * n], pairs[2 * n + 1]) for n, d in enumerate(device_ids)})
        appended.published = pairs[-1] == "1"
        return appended

    async def cancel_once(self, user_id: str, notification_id: str) -> bool:
        """Make every later ``append(..., once_for=notification_id)`` append nothing.

        True if no append for it had happened (now none ever will); False if
        one already did.
        """
        marker = self._keys.fanout(user_id, notification_id)
        return bool(await self._redis.set(marker, "0", nx=True, ex=MARKER_TTL))

    async def drop_user(self, user_id: str) -> None:
        """A deleted account's counter and epoch (a new account never reuses a user id)."""
        await self._redis.delete(self._keys.device_version(user_id), self._keys.epoch(user_id))

    async def bump_device_version(self, user_id: str) -> None:
        """Make every node's cached device list of the user stale (INCR creates it at 1)."""
        await self._redis.incr(self._keys.device_version(user_id))

    async def read_after(self, user_id: str, device_id: str, after: str, count: int) -> ReadResult:
        """Entries strictly after ``after``, oldest first, at most ``count``.

        Entries past the retention window are trimmed first, so what is
        returned is exactly what a device may still be given.
        """
        cutoff = f"{int(time.time() * 1000) - RETENTION_MS}-0"
        stream = self._keys.stream(user_id, device_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xtrim(stream, minid=cutoff, approximate=False)
            pipe.xrange(stream, min=f"({after}", max="+", count=count)
            pipe.get(self._keys.last(user_id, device_id))
            _, rows, last = await pipe.execute()
        entries = [Entry(i.decode(), f[b"p"].decode(), f[b"b"]) for i, f in rows]
        return ReadResult(entries, last.decode() if last else ZERO)

    async def last_id(self, user_id: str, device_id: str) -> str:
        value = await self._redis.get(self._keys.last(user_id, device_id))
        return value.decode() if value else ZERO

    async def load_cursor(self, user_id: str, device_id: str) -> str | None:
        value = await self._redis.get(self._keys.cursor(user_id, device_id))
        return value.decode() if value else None

    async def save_cursors(self, cursors: dict[str, tuple[str, dict[str, str]]]) -> None:
        """Advance stored cursors: user -> (the epoch they belong to, device -> id).

        Never backwards; a user whose epoch changed (Redis lost the data) is
        skipped. On a cluster each call holds one slot's users.
        """
        for group in self._cursor_groups(cursors):
            keys: list[str] = []
            args: list[Any] = []
            for user_id, (epoch, devices) in group:
                keys += [self._keys.epoch(user_id), *(self._keys.cursor(user_id, d) for d in devices)]
                args += [len(devices), epoch, *devices.values()]
            await self._save_cursors(keys=keys, args=args)

    def _cursor_groups(self, cursors: dict[str, tuple[str, dict[str, str]]]) -> list[list[Any]]:
        """Users per script call: by hash slot on a cluster, chunks of ~SAVE_CHUNK devices otherwise."""
        open_groups: dict[int, tuple[list[Any], list[int]]] = {}  # slot -> (its open group, [devices in it])
        groups: list[list[Any]] = []
        for user_id, entry in cursors.items():
            if not entry[1]:
                continue
            slot = key_slot(self._keys.epoch(user_id).encode()) if self._cluster else 0
            group, size = open_groups.get(slot, (None, [0]))
            if group is None or size[0] >= SAVE_CHUNK:
                group, size = [], [0]
                groups.append(group)
                open_groups[slot] = (group, size)
            group.append((user_id, entry))
            size[0] += len(entry[1])
        return groups

    async def drop(self, user_id: str, device_id: str) -> None:
        await self._redis.delete(
            self._keys.stream(user_id, device_id), self._keys.last(user_id, device_id),
            self._keys.cursor(user_id, device_id),
        )
