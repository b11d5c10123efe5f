"""The per-node device-list cache (notisync/delivery/recipients.py) on a real redis and SQLite store:
a list past its age is still served at once, and reloaded behind the post that found it old."""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from notisync.delivery import recipients
from notisync.delivery.recipients import Recipients
from store.documents import utcnow
from store.keys import Keys
from store.sqlite import SQLiteStore
from store.streams import Streams


def device(user_id: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "user_id": user_id, "device_name": "Pixel", "device_type": "mobile",
            "push_token": None, "last_seen": None, "created_at": utcnow(), "revoked_at": None}


async def test_an_old_list_is_served_at_once_and_reloaded_in_the_background(redis_server: Any, tmp_path: Any) -> None:
    redis = Redis.from_url(redis_server.url)
    streams = Streams(redis, Keys("rcache"))
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    await store.open()
    cache = Recipients(store, streams)
    try:
        phone = device("u1")
        await store.create_device(phone)
        first = await cache.get("u1")
        assert first.devices == (phone["id"],)
        # A device added without the version bump (the lost-bump case the age guards against).
        laptop = device("u1")
        await store.create_device(laptop)
        assert (await cache.get("u1")) is first  # young: served from the cache
        # Once old, the post that finds it so is not held up: it gets the old list...
        cache._lists["u1"] = first.__class__(first.epoch, first.version, first.devices,
                                             time.monotonic() - recipients.MAX_AGE_SECONDS - 1, first.types)
        old = await cache.get("u1")
        assert old.devices == (phone["id"],)
        # ...and the reload it started brings the new device in, once.
        deadline = time.monotonic() + 10
        while set((await cache.get("u1")).devices) != {phone["id"], laptop["id"]}:
            assert time.monotonic() < deadline, "the old list was never reloaded"
            await asyncio.sleep(0.01)
        assert not cache._reloads
    finally:
        await store.close()
        await redis.aclose()
