"""Presence against a real redis: the heartbeat's refresh over many users at once."""
from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from store.keys import Keys
from store.presence import REFRESH_CHUNK, Presence


async def test_heartbeat_refresh_across_chunks_keeps_ours_and_reports_dead_devices(redis_server):
    redis = Redis.from_url(redis_server.url)
    try:
        keys = Keys("ptest")
        alive = Presence(redis, keys, ttl_seconds=30)   # this node, heartbeating
        dying = Presence(redis, keys, ttl_seconds=0.2)  # a node that stops heartbeating
        users = [f"u{i}" for i in range(2 * REFRESH_CHUNK + 50)]  # three pipelines' worth
        ours = {u: [alive.member("phone", "a", u)] for u in users}
        for u in users:
            assert await alive.add(u, "phone", ours[u][0])
        dead_users = [users[3], users[REFRESH_CHUNK + 7], users[-1]]  # one in each chunk
        for u in dead_users:
            assert await dying.add(u, "laptop", dying.member("laptop", "b", u))
        await asyncio.sleep(0.3)  # node b's entries expire
        gone = await alive.refresh(ours)
        assert gone == {u: ["laptop"] for u in dead_users}
        for u in users:  # every socket of ours is still online, nothing else is
            assert await alive.online_devices(u) == {"phone"}
    finally:
        await redis.aclose()
