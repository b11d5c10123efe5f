"""Lua calls batched into one pipeline: each caller gets its own reply or error."""
from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from store.script_batch import ScriptBatcher

SCRIPT = """
if ARGV[1] == 'fail' then return redis.error_reply('FAILED on purpose') end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


@pytest.fixture
async def redis(redis_server):
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_concurrent_calls_get_their_own_replies(redis: Redis) -> None:
    call = ScriptBatcher(redis, redis.register_script(SCRIPT))
    results = await asyncio.gather(
        *(call([f"k{n % 3}"], [1]) for n in range(30)), call(["k0"], ["fail"]), return_exceptions=True
    )
    assert isinstance(results[-1], ResponseError) and "on purpose" in str(results[-1])
    assert sorted(results[:-1]) == sorted(list(range(1, 11)) * 3)
    assert [int(await redis.get(f"k{n}")) for n in range(3)] == [10, 10, 10]


async def test_scripts_flushed_from_redis_are_loaded_again(redis: Redis) -> None:
    call = ScriptBatcher(redis, redis.register_script(SCRIPT))
    assert await call(["k"], [5]) == 5
    await redis.script_flush()
    assert await asyncio.gather(call(["k"], [1]), call(["k"], [1])) in ([6, 7], [7, 6])
