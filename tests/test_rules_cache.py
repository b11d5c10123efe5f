"""The per-node rules cache (core/rulebook.py) on a real redis and SQLite store: a user whose
check is half due is re-read in another user's MGET, and a change it finds is never served."""
from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from notisync.core import rulebook
from notisync.core.rulebook import RuleService
from store.keys import Keys
from store.sqlite import SQLiteStore


async def test_a_change_found_riding_along_is_reloaded_not_served(redis_server: Any, tmp_path: Any) -> None:
    redis = Redis.from_url(redis_server.url)
    keys = Keys("rulecache")
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    await store.open()
    here = RuleService(store, redis, keys)
    elsewhere = RuleService(store, redis, keys)  # another node sharing the store and redis
    try:
        assert (await here.ruleset("a")).count == 0 and (await here.ruleset("b")).count == 0
        await elsewhere.create("b", {"name": "r", "enabled": True, "position": None, "match": {"app_name": "Slack"}, "action": {"drop": True}})
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Until a's check is due, nothing is re-read; once it is, b (half due) rides along.
        while "b" in here._cache and loop.time() - start < 30:
            await asyncio.sleep(rulebook.CACHE_SECONDS / 5)
            await here.ruleset("a")
        assert "b" not in here._cache  # its counter moved: dropped, not refreshed
        assert (await here.ruleset("b")).count == 1
        # An unchanged user riding along keeps its compiled rules, freshly stamped.
        before = here._cache["a"]
        while here._cache["a"] is before and loop.time() - start < 30:
            await asyncio.sleep(rulebook.CACHE_SECONDS / 5)
            await here.ruleset("b")
        assert here._cache["a"][2] is before[2] and here._cache["a"][0] > before[0]
    finally:
        await store.close()
        await redis.aclose()


async def test_posts_arriving_while_a_check_is_out_share_it(redis_server: Any, tmp_path: Any) -> None:
    """At saturation every post of a user whose check was due sent an MGET of its own while the
    first was still out (hundreds a second); they now wait for that one and use what it read."""
    redis = Redis.from_url(redis_server.url)
    watcher = Redis.from_url(redis_server.url)
    keys = Keys("rulecache-flight")
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    await store.open()
    here = RuleService(store, redis, keys)
    elsewhere = RuleService(store, redis, keys)
    try:
        await here.ruleset("a")
        await asyncio.sleep(rulebook.CACHE_SECONDS * 1.2)  # a's check is due
        await watcher.config_resetstat()
        sets = await asyncio.gather(*(here.ruleset("a") for _ in range(50)))
        mgets = (await watcher.info("commandstats")).get("cmdstat_mget", {}).get("calls", 0)
        assert mgets == 1
        assert all(s is sets[0] for s in sets)
        # A change made while posts wait is still seen within CACHE_SECONDS.
        await elsewhere.create("a", {"name": "r", "enabled": True, "position": None, "match": {"app_name": "Slack"}, "action": {"drop": True}})
        await asyncio.sleep(rulebook.CACHE_SECONDS * 1.2)
        assert [s.count for s in await asyncio.gather(*(here.ruleset("a") for _ in range(20)))] == [1] * 20
    finally:
        await store.close()
        await redis.aclose()
        await watcher.aclose()
