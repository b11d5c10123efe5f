"""The fan-out script against a real Redis: its wake-up is the event the delivery engine decodes,
it is published only when another node holds a socket of the user, and a notification's fan-out
appends once however often it is attempted."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.asyncio import Redis

from notisync.delivery import events
from store.keys import Keys
from store.streams import StaleDevices, Streams


@pytest.fixture
async def redis(redis_server):
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def next_message(pubsub) -> dict:
    for _ in range(100):
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if msg is not None:
            return msg
    raise AssertionError("no publication")


async def listening(redis: Redis, user: str) -> tuple[Keys, Streams, str, Any]:
    """The streams, the user's epoch, and a pub/sub connection subscribed to the user's channel."""
    keys = Keys()
    streams = Streams(redis, keys)
    epoch = await streams.ensure_epoch(user)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.user_channel(user))
    return keys, streams, epoch, pubsub


async def test_the_scripts_wake_up_decodes_as_new_entries(redis: Redis) -> None:
    keys, streams, epoch, pubsub = await listening(redis, "u1")
    await redis.zadd(keys.presence("u1"), {"d2|node-b|c1": 9e15})  # a socket on another node
    appended = await streams.append(epoch, "u1", 0, ["d1", "d2"], "node-a", b'{"type":"x"}')
    assert appended is not None and set(appended) == {"d1", "d2"}
    head, _, body = (await next_message(pubsub))["data"].partition(b"\n")
    header = json.loads(head)
    assert header["n"] == "node-a" and body == b'{"type":"x"}'
    assert events.decode(header) == events.NewEntries(appended)
    await pubsub.aclose()


async def test_the_wake_up_is_published_only_if_another_node_holds_a_socket(redis: Redis) -> None:
    keys, streams, epoch, pubsub = await listening(redis, "u2")

    async def published() -> list[bytes]:
        await redis.ping()  # the script has run; give a publication time to arrive
        got = []
        while (msg := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3)) is not None:
            got.append(msg["data"])
        return got

    # Nobody present, or only the appending node's own sockets: appended, nothing published.
    assert (await streams.append(epoch, "u2", 0, ["d1"], "node-a", b"one")).published is False
    assert await published() == []
    await redis.zadd(keys.presence("u2"), {"d1|node-a|c1": 9e15, "d2|node-a|c2": 9e15})
    assert (await streams.append(epoch, "u2", 0, ["d1", "d2"], "node-a", b"two")).published is False
    assert await published() == []
    # A socket on another node, even one past its expiry: published (silent body too).
    await redis.zadd(keys.presence("u2"), {"d2|node-b|c3": 1})
    three = await streams.append(epoch, "u2", 0, ["d1", "d2"], "node-a", b"three", silent_body=b"hush",
                                 silent=frozenset({"d2"}))
    assert three.published is True and set(three) == {"d1", "d2"}
    got = await published()
    assert sorted(m.partition(b"\n")[2] for m in got) == [b"hush", b"three"]
    # A member that does not parse counts as another node.
    await redis.delete(keys.presence("u2"))
    await redis.zadd(keys.presence("u2"), {"garbage": 9e15})
    await streams.append(epoch, "u2", 0, ["d1"], "node-a", b"four")
    assert [m.partition(b"\n")[2] for m in await published()] == [b"four"]
    # Every append is in the streams whatever was published.
    assert [e.body for e in (await streams.read_after("u2", "d1", "0-0", 10)).entries] == [b"one", b"two", b"three", b"four"]
    await pubsub.aclose()


async def test_a_notification_is_appended_once_and_a_cancelled_one_never(redis: Redis) -> None:
    streams = Streams(redis, Keys())
    epoch = await streams.ensure_epoch("u1")
    calls = [streams.append(epoch, "u1", 0, ["d1"], "n", b"b", once_for="note-1") for _ in range(5)]
    results = await asyncio.gather(*calls)
    assert sum(r is not None for r in results) == 1
    assert len((await streams.read_after("u1", "d1", "0-0", 10)).entries) == 1
    # A stale device list appends nothing, marker or not.
    with pytest.raises(StaleDevices):
        await streams.append(epoch, "u1", 7, ["d1"], "n", b"b", once_for="note-2")
    assert await streams.cancel_once("u1", "note-2") is True  # nobody appended it: now nobody will
    assert await streams.append(epoch, "u1", 0, ["d1"], "n", b"b", once_for="note-2") is None
    assert await streams.cancel_once("u1", "note-1") is False  # already appended: too late to cancel
    assert len((await streams.read_after("u1", "d1", "0-0", 10)).entries) == 1


def test_events_published_from_python_round_trip() -> None:
    for event in (events.DeviceStatus("d1"), events.Revoked("d2"), events.SessionEnded(("s1", "s2"))):
        assert events.decode(events.encode(event)) == event
    assert events.decode({"k": "from-a-newer-node"}) is None
