"""Redis Sentinel: two nodes on a primary + replica + 3 sentinels; the primary SIGKILLed mid-churn.

After Sentinel promotes the replica, every node reconnects, re-subscribes and
re-syncs its sockets. Replication is asynchronous, so the promoted replica
may lack the primary's last writes; the nodes' pending sweep re-appends the
notifications behind them (they stay pending for seconds after their
fan-out). What must hold: every accepted notification is in the store, every
device ends up holding exactly the server's state, and a device that did not
receive everything meant for it was told ``sync_required`` — never a silent gap.
"""
from __future__ import annotations

import asyncio
import shutil
import signal
import time

import pytest
import redis

from store.keys import Keys
from tests.harness import Node, call, new_user
from tests.redis_topologies import MASTER, SentinelSetup, all_healthy, two_nodes_on
from tests.test_churn import run_flow, server_state, setup_users


@pytest.fixture
def sentinel_nodes():
    topology = SentinelSetup().start()
    with two_nodes_on(topology, ["--redis-sentinels", topology.sentinel_flag, "--redis-master", MASTER]) as nodes:
        yield topology, nodes


async def test_primary_killed_mid_churn_loses_nothing_silently(sentinel_nodes):
    topology, nodes = sentinel_nodes
    old_primary = topology.primary()
    users = await setup_users(nodes, users=3, per_user=3)
    timing: dict[str, float] = {}

    async def kill_primary() -> None:
        timing["killed"] = time.monotonic()
        old_primary.kill()
        # Failover time as the README states it: from the kill until every node
        # answers healthy again (bus re-subscribed, Redis answering).
        while not await all_healthy(nodes):
            await asyncio.sleep(0.1)
        timing["healthy"] = time.monotonic()

    posted, actions = await run_flow(nodes, users, count=150, middle=kill_primary)
    assert topology.primary_port() != old_primary.port, "Sentinel never promoted the replica"
    print(f"\nsentinel failover: kill -> every node healthy in {timing['healthy'] - timing['killed']:.1f}s")
    resyncs = 0
    for (user, devs), ids, acts in zip(users, posted, actions):
        truth = await server_state(user, nodes[0])
        assert set(truth) == set(ids), "an accepted notification is missing from the store"
        phone = devs[0]
        for dev in devs:
            assert dev.state == truth, "a device silently misses state"
            expected = {("new", nid, phone.id) for nid in ids if dev is not phone}
            expected |= {("sync", nid, actor) for nid, actor in acts if actor != dev.id}
            missing = expected - set(dev.received)
            assert not missing or dev.sync_required, f"{len(missing)} messages missing without sync_required"
            resyncs += dev.sync_required
    print(f"devices told sync_required: {resyncs}")
    assert await all_healthy(nodes)


@pytest.fixture
def wait_node():
    """One node with --redis-wait 1 on the Sentinel topology."""
    topology = SentinelSetup().start()
    node = Node(extra=["--redis-sentinels", topology.sentinel_flag, "--redis-master", MASTER, "--redis-wait", "1"])
    try:
        node.start()
        yield topology, node
        assert node.stop(timeout=60) == 0, node.log()
    finally:
        node.kill()
        topology.stop()
        shutil.rmtree(node.data_dir, ignore_errors=True)


async def test_redis_wait_answers_a_post_once_the_replica_has_it(wait_node):
    topology, node = wait_node
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("web")
    replica = redis.Redis(port=topology.servers[1].port, socket_timeout=5)
    keys = Keys()
    for i in range(20):
        nid = (await user.post(f"n{i}", device=phone))["id"]
        # WAIT 1 returned before the 201: the replica holds the append already.
        assert replica.exists(keys.fanout(user.id, nid)), "the replica lacks an acknowledged fan-out"
    assert replica.xlen(keys.stream(user.id, laptop)) == 20
    # A stalled replica: posts are still accepted (after WAIT's 1 s), and the node says so.
    replica_proc = topology.servers[1].proc
    replica_proc.send_signal(signal.SIGSTOP)
    try:
        r = await call(node, "POST", "/api/v1/notifications", {"app_name": "A", "title": "t"}, token=user.token,
                       headers={"X-Device-ID": phone})
        assert r.status == 201, r.body
    finally:
        replica_proc.send_signal(signal.SIGCONT)
    assert "WAIT 1: 0 replica(s) confirmed" in node.log()
