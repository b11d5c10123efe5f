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
    e1, e2 = await streams.ensure_epoch("u1"), await streams.ensure_epoch("u2")
    devices = [f"d{n}" for n in range(SAVE_CHUNK + 5)]  # more than one script call
    await streams.save_cursors({"u1": (e1, {d: "100-5" for d in devices}), "u2": (e2, {"x": "1-1"})})
    await streams.save_cursors({"u1": (e1, {"d0": "100-4", "d1": "99-9", "d2": "100-6", "d3": "101-0"})})
    assert [await streams.load_cursor("u1", d) for d in ("d0", "d1", "d2", "d3")] == [
        "100-5", "100-5", "100-6", "101-0"]
    assert await streams.load_cursor("u1", devices[-1]) == "100-5"
    assert await streams.load_cursor("u2", "x") == "1-1"
    # A stale epoch (Redis lost the user's data since) saves nothing for that user only.
    await streams.save_cursors({"u1": ("123", {"d0": "200-0"}), "u2": (e2, {"x": "2-0"})})
    assert await streams.load_cursor("u1", "d0") == "100-5"
    assert await streams.load_cursor("u2", "x") == "2-0"


async def test_each_user_has_its_own_epoch_made_once(streams: Streams) -> None:
    first = await streams.ensure_epoch("u1")
    assert await streams.ensure_epoch("u1") == first
    epoch, version = await streams.user_state("u1")
    assert (epoch, version) == (first, 0)
    await streams.bump_device_version("u1")
    assert await streams.user_state("u1") == (first, 1)
    assert await streams.device_state("u1", "d1") == (first, "0-0", None)
