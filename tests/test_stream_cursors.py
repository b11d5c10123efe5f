"""Stored stream positions: many devices in one call, never backwards, only in this epoch."""
from __future__ import annotations

import pytest
from redis.asyncio import Redis

from store.keys import Keys
from store.streams import SAVE_CHUNK, Streams


@pytest.fixture
async def streams(redis_server):
    client = Redis.from_url(redis_server.url)
    yield Streams(client, Keys())
    await client.aclose()


async def test_cursors_advance_never_back_and_only_in_their_epoch(streams: Streams) -> None:
    epoch = await streams.ensure_epoch()
    devices = [f"d{n}" for n in range(SAVE_CHUNK + 5)]  # more than one script call
    await streams.save_cursors(epoch, {d: "100-5" for d in devices})
    await streams.save_cursors(epoch, {"d0": "100-4", "d1": "99-9", "d2": "100-6", "d3": "101-0"})
    assert [await streams.load_cursor(d) for d in ("d0", "d1", "d2", "d3")] == ["100-5", "100-5", "100-6", "101-0"]
    assert await streams.load_cursor(devices[-1]) == "100-5"
    await streams.save_cursors("123", {"d0": "200-0"})  # a stale epoch: Redis lost its data since
    assert await streams.load_cursor("d0") == "100-5"
