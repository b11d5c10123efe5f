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


async def test_a_connection_killed_between_batches_is_replaced(redis: Redis, redis_server) -> None:
    """The batcher holds one connection between batches: Redis dropping it (a restart, a
    proxy's idle timeout) costs the next batch a reconnect, not an error."""
    call = ScriptBatcher(redis, redis.register_script(SCRIPT))
    assert await call(["k"], [1]) == 1
    async with Redis.from_url(redis_server.url) as admin:
        assert await admin.client_kill_filter(_type="normal", skipme=True) >= 1
    assert await call(["k"], [1]) == 2


async def test_after_a_timed_out_batch_the_next_gets_its_own_replies(redis_server) -> None:
    """A batch that timed out leaves its replies unread on the socket; the next batch must
    never read them as its own (every caller would get a neighbour's counter)."""
    client = Redis.from_url(redis_server.url, socket_timeout=0.3, retry=None)
    admin = Redis.from_url(redis_server.url)
    try:
        call = ScriptBatcher(client, client.register_script(SCRIPT))
        assert await call(["a"], [100]) == 100
        await admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        with pytest.raises(Exception) as failed:
            await call(["a"], [1])
        assert "Timeout" in type(failed.value).__name__
        await asyncio.sleep(1.0)  # the pause ends (whether the timed-out call ran is Redis's business)
        # Fresh keys: a reply read from the timed-out batch would say 101, never these.
        assert await call(["b"], [7]) == 7
        assert await call(["c"], [5]) == 5
    finally:
        await client.aclose()
        await admin.aclose()
