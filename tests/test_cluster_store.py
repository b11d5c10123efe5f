"""The store's Redis pieces on a real Redis Cluster (three primaries, one replica each).

Every per-user key shares the user's hash slot, so the fan-out script runs on
the user's shard and publishes the wake-up there (SPUBLISH); cursors of users
on different shards are saved per slot; the sharded bus follows a slot that
moves to another primary. The two-node churn with a primary killed is
``tests/test_redis_cluster.py``.
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from notisync.delivery import events
from store.keys import Keys
from store.presence import Presence
from store.shard_bus import ShardedBus
from store.streams import Streams
from tests.redis_cluster_topology import ClusterSetup


@pytest.fixture(scope="module")
def cluster():
    setup = ClusterSetup().start()
    yield setup
    setup.stop()


@pytest.fixture
async def rc(cluster):
    client = RedisCluster.from_url(cluster.url)
    await client.initialize()
    yield client
    await client.aclose()


def users_on_every_shard(rc: RedisCluster, keys: Keys, prefix: str) -> list[str]:
    """User ids whose slots together cover every primary (one per primary); the cluster is shared by the tests."""
    by_owner: dict[str, str] = {}
    n = 0
    while len(by_owner) < len(rc.get_primaries()):
        user = f"{prefix}-{n}"
        by_owner.setdefault(rc.get_node_from_key(keys.epoch(user)).name, user)
        n += 1
    return list(by_owner.values())


async def until(check: Any, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


async def started_bus(rc: RedisCluster, node_id: str, got: list[Any], resyncs: list[int]) -> ShardedBus:
    async def resync() -> None:
        resyncs.append(1)

    bus = ShardedBus(rc, Keys(), node_id)
    await bus.start(lambda user, header, body: got.append((user, header, body)), resync)
    return bus


async def test_a_fan_out_on_every_shard_wakes_the_subscribed_node(rc: RedisCluster) -> None:
    keys = Keys()
    streams = Streams(rc, keys, cluster=True)
    got: list[Any] = []
    listener = await started_bus(rc, "listener", got, [])
    try:
        users = users_on_every_shard(rc, keys, "fan-out")
        for user in users:
            await listener.subscribe(user)
            await rc.zadd(keys.presence(user), {"d2|listener|c1": 9e15})  # its socket, in the user's slot
        for user in users:
            epoch = await streams.ensure_epoch(user)
            appended = await streams.append(epoch, user, 0, ["d1", "d2"], "writer", b'{"type":"x"}', once_for="n1")
            assert appended is not None and set(appended) == {"d1", "d2"}
            # The same notification again appends nothing (its marker is in the user's slot too).
            assert await streams.append(epoch, user, 0, ["d1"], "writer", b"again", once_for="n1") is None
            assert [e.body for e in (await streams.read_after(user, "d1", "0-0", 10)).entries] == [b'{"type":"x"}']
        await until(lambda: len(got) == len(users))
        assert {user for user, _, _ in got} == set(users)
        for user, header, body in got:
            assert header["n"] == "writer" and body == b'{"type":"x"}'
            assert isinstance(events.decode(header), events.NewEntries)
    finally:
        await listener.stop()


async def test_cursors_and_presence_of_users_on_every_shard(rc: RedisCluster) -> None:
    keys = Keys()
    streams = Streams(rc, keys, cluster=True)
    users = users_on_every_shard(rc, keys, "cursors")
    epochs = {user: await streams.ensure_epoch(user) for user in users}
    await streams.save_cursors({user: (epochs[user], {"d1": "5-1", "d2": "6-0"}) for user in users})
    await streams.save_cursors({user: (epochs[user], {"d1": "4-0"}) for user in users})  # never backwards
    for user in users:
        assert await streams.device_state(user, "d1") == (epochs[user], "0-0", "5-1")
        assert await streams.load_cursor(user, "d2") == "6-0"
    presence = Presence(rc, keys, ttl_seconds=30, cluster=True)
    for user in users:
        assert await presence.add(user, "d1", Presence.member("d1", "node", "c1"))
    gone = await presence.refresh({user: [Presence.member("d1", "node", "c1")] for user in users})
    assert gone == {}
    assert all([await presence.online_devices(user) == {"d1"} for user in users])


def move_slot(cluster: ClusterSetup, slot: int, source: int, target: int) -> None:
    """Migrate one slot, keys included, from the primary on port ``source`` to ``target`` (as resharding does)."""
    src, dst = cluster.client(source), cluster.client(target)
    src_id, dst_id = src.execute_command("CLUSTER", "MYID"), dst.execute_command("CLUSTER", "MYID")
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
    for proc in cluster.primaries():
        cluster.client(proc.port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)


async def test_the_bus_follows_a_slot_moved_to_another_primary(rc: RedisCluster, cluster: ClusterSetup) -> None:
    keys = Keys()
    got: list[Any] = []
    resyncs: list[int] = []
    listener = await started_bus(rc, "listener", got, resyncs)
    writer = await started_bus(rc, "writer", [], [])
    user = "moving-user"
    try:
        await listener.subscribe(user)
        await writer.publish(user, {"k": "x"}, b"before")
        await until(lambda: len(got) == 1)
        channel = keys.user_channel(user)
        owner = rc.get_node_from_key(channel)
        target = next(n for n in rc.get_primaries() if n.name != owner.name)
        move_slot(cluster, rc.keyslot(channel), owner.port, target.port)
        # Redis drops the subscription (sunsubscribe) when the slot leaves; the
        # bus subscribes on the new owner and re-syncs, as after a lost connection.
        await until(lambda: resyncs and listener.connected)
        with redis.Redis(port=target.port) as direct:
            assert direct.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1] == 1
        await writer.publish(user, {"k": "x"}, b"after")
        await until(lambda: len(got) == 2)
        assert [body for _, _, body in got] == [b"before", b"after"]
        assert got[1][1]["n"] == "writer"
    finally:
        await listener.stop()
        await writer.stop()
