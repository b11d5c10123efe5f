"""The Redis Cluster test topology on its own, through redis-py's cluster client.

Three primaries with one replica each (tests/redis_topologies.py). Before
NotiSync runs on it, the topology itself must hold: keys land on all three
shards, sharded pub/sub delivers on each shard, and a killed primary's slots
are served again by its promoted replica with the data it had.
"""
from __future__ import annotations

import shutil
import time
from typing import Iterator

import pytest
from redis.cluster import RedisCluster
from redis.exceptions import MovedError

from tests.redis_cluster_topology import ClusterSetup
from tests.redis_topologies import Proc


def started() -> Iterator[ClusterSetup]:
    setup = ClusterSetup().start()
    try:
        yield setup
    finally:
        setup.stop()
        shutil.rmtree(setup.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def topology() -> Iterator[ClusterSetup]:
    """One cluster for the tests that leave it as they found it (it takes seconds to form)."""
    yield from started()


@pytest.fixture
def own_topology() -> Iterator[ClusterSetup]:
    """A cluster of its own, for the test that kills a node."""
    yield from started()


def client(setup: ClusterSetup) -> RedisCluster:
    port = setup.primaries()[0].port
    return RedisCluster(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)


def key_per_primary(setup: ClusterSetup) -> dict[int, str]:
    """One hash-tagged key per primary port."""
    keys: dict[int, str] = {}
    i = 0
    while len(keys) < len(setup.primaries()):
        key = f"{{user{i}}}:k"
        keys.setdefault(setup.primary_for_key(key).port, key)
        i += 1
    return keys


def test_layout_is_three_primaries_each_with_a_live_replica(topology):
    primaries = topology.primaries()
    assert len(primaries) == 3 and len(topology.servers) == 6
    for p in primaries:
        with topology.client(p.port) as c:
            repl = c.info("replication")
        assert repl["connected_slaves"] == 1, repl
    covered = sum(hi - lo + 1 for n in topology.nodes_view(primaries[0].port) for lo, hi in n["slots"])
    assert covered == 16384


def test_keys_on_every_shard(topology):
    rc = client(topology)
    try:
        keys = key_per_primary(topology)
        assert len(keys) == 3
        for port, key in keys.items():
            assert rc.set(key, f"v-{port}")
            assert rc.get_node_from_key(key).port == port, "redis-py and CLUSTER NODES disagree on the owner"
        for port, key in keys.items():
            assert rc.get(key) == f"v-{port}"
            with topology.client(port) as direct:
                assert direct.get(key) == f"v-{port}", "the key is not on the primary that owns its slot"
    finally:
        rc.close()


def test_sharded_pubsub_delivers_on_every_shard(topology):
    rc = client(topology)
    pubsub = rc.pubsub()
    try:
        channels = {port: f"{key}:wake" for port, key in key_per_primary(topology).items()}
        for channel in channels.values():
            pubsub.ssubscribe(channel)
        for port, channel in channels.items():
            receivers = rc.spublish(channel, f"hello {port}")
            assert receivers == 1, f"SPUBLISH on {channel} reached {receivers} subscribers"
        got = {}
        deadline = time.time() + 30
        while len(got) < len(channels) and time.time() < deadline:
            msg = pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=0.5)
            if msg and msg["type"] == "smessage":
                got[msg["channel"]] = msg["data"]
        assert got == {ch: f"hello {port}" for port, ch in channels.items()}
        # A shard channel belongs to its slot's shard: another primary refuses it.
        port, channel = next(iter(channels.items()))
        other = next(p for p in topology.primaries() if p.port != port)
        with topology.client(other.port) as direct, pytest.raises(MovedError) as moved:
            direct.execute_command("SPUBLISH", channel, "x")
        assert moved.value.port == port, "MOVED points elsewhere than the owning primary"
    finally:
        pubsub.close()
        rc.close()


def test_killed_primary_is_replaced_by_its_replica(own_topology):
    topology = own_topology
    key = "{victim}:k"
    old: Proc = topology.primary_for_key(key)
    with topology.client(old.port) as direct:
        direct.set(key, "kept")
        # Replication is asynchronous: WAIT makes this write the replica's too.
        assert direct.execute_command("WAIT", 1, 10000) == 1
    topology.kill(old)
    elapsed = topology.wait_failover(old, timeout=60)
    print(f"\nbare cluster failover: kill -> cluster ok, slots on the promoted replica in {elapsed:.1f}s")
    new = topology.primary_for_key(key)
    assert new is not old and new.proc.poll() is None
    assert len(topology.primaries()) == 3
    rc = client(topology)
    try:
        assert rc.get(key) == "kept"
        assert rc.set(key, "after") and rc.get(key) == "after"
        assert rc.get_node_from_key(key).port == new.port
    finally:
        rc.close()
