"""The pub/sub bus on a real redis: a node skips its own publications (it delivered them
locally), unless it is watching for them after a fan-out whose reply was lost."""
from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from store.bus import Bus
from store.keys import Keys


async def wait_for(cond: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_own_publications_are_skipped_unless_watched(redis_server: Any) -> None:
    redis = Redis.from_url(redis_server.url)
    keys = Keys("echotest")
    mine, other = Bus(redis_server.url, redis, keys, "node-a"), Bus(redis_server.url, redis, keys, "node-b")
    got: list[tuple[str, dict[str, Any], bytes]] = []
    await mine.start(lambda user, header, body: got.append((user, header, body)), lambda: None)
    await other.start(lambda *a: None, lambda: None)
    try:
        await mine.subscribe("u1")
        await mine.publish("u1", {"k": "x", "seq": 1}, b"own")  # skipped: this node's own
        await other.publish("u1", {"k": "x", "seq": 2}, b"theirs")
        await wait_for(lambda: len(got) == 1)
        assert got[0][0] == "u1" and got[0][1]["seq"] == 2 and got[0][2] == b"theirs"
        # The fan-out script writes the same header start: skipped too.
        await redis.publish(keys.user_channel("u1"), b'{"n":"node-a","k":"m","e":{}}\nscript')
        # A node whose id merely starts like ours is another node.
        await redis.publish(keys.user_channel("u1"), b'{"n":"node-ab","k":"m","e":{}}\nlookalike')
        await wait_for(lambda: len(got) == 2)
        assert got[1][2] == b"lookalike"
        mine.expect_own_echo("u1", seconds=60)  # a lost reply: take our own for a while
        await mine.publish("u1", {"k": "x", "seq": 3}, b"own, watched")
        await wait_for(lambda: len(got) == 3)
        assert got[2][1] == {"n": "node-a", "k": "x", "seq": 3}
        mine.expect_own_echo("u1", seconds=0)  # the watch ran out: skipped again
        await mine.publish("u1", {"k": "x", "seq": 4}, b"own again")
        await other.publish("u1", {"k": "x", "seq": 5}, b"theirs again")
        await wait_for(lambda: len(got) == 4)
        assert got[3][1]["seq"] == 5
        assert not mine._echo_until  # the expired watch is forgotten, so the fast skip is back
    finally:
        await mine.stop()
        await other.stop()
        await redis.aclose()
