"""The pub/sub bus's reconnect on a real redis: a subscription asked for while the
connection was being re-made is not lost.

A socket that connects while the bus is down leaves its user's channel to the
reconnect (``Bus.subscribe`` returns at once). The reconnect lists the held
channels, subscribes them and only then counts as connected: a socket that
arrived in between found the bus down *and* missed the list. Its user's
wake-ups must still arrive.
"""
from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from store.bus import Bus
from store.keys import Keys
from tests.test_bus_echo import wait_for


class ArrivalDuringReconnect(Bus):
    """Starts a subscription for ``late`` right after the reconnect took its list of channels."""

    late: str | None = None

    def _held_channels(self) -> list[str]:
        channels = super()._held_channels()
        if self.late is not None:
            asyncio.get_running_loop().create_task(self.subscribe(self.late))
            self.late = None
        return channels


async def test_a_subscription_made_while_reconnecting_gets_its_wake_ups(redis_server: Any) -> None:
    redis = Redis.from_url(redis_server.url)
    keys = Keys("reconnecttest")
    got: list[tuple[str, bytes]] = []
    resyncs: list[int] = []

    async def resync() -> None:
        resyncs.append(1)

    bus = ArrivalDuringReconnect(redis_server.url, redis, keys, "node-a", client_name="bus-under-test")
    other = Bus(redis_server.url, redis, keys, "node-b")
    await bus.start(lambda user, header, body: got.append((user, body)), resync)
    await other.start(lambda *a: None, resync)
    try:
        await bus.subscribe("early")
        bus.late = "late"
        await redis.client_kill_filter(_type="pubsub", skipme=True)  # both buses drop; both reconnect
        await wait_for(lambda: len(resyncs) == 2 and bus.connected and other.connected)
        assert bus._refs["late"] == 1  # the late socket's subscribe ran, during the reconnect
        for user in ("early", "late"):
            await other.publish(user, {"k": "x"}, user.encode())
        await wait_for(lambda: len(got) == 2)
        assert sorted(got) == [("early", b"early"), ("late", b"late")]
    finally:
        await bus.stop()
        await other.stop()
        await redis.aclose()
