"""Redis Cluster: two nodes on three primaries with one replica each; one primary SIGKILLed mid-churn.

Every key of a user carries the hash tag ``{user id}`` (store/keys.py), so a
user lives on one shard, and node-to-node wake-ups are sharded pub/sub on
that shard. When the primary owning a user's slot dies and the cluster
promotes its replica, every node must find the new owner, re-subscribe and
re-sync its sockets. Replication is asynchronous, so the promoted replica may
lack the dead primary's last writes; what must hold is what the Sentinel test
asserts: every accepted notification is in the store, every device ends up
holding exactly the server's state, and a device that did not receive
everything meant for it was told ``sync_required`` — never a silent gap.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from store.keys import Keys
from tests.harness import WS, Node, User, call, new_user, ws_connect
from tests.redis_cluster_topology import ClusterSetup
from tests.redis_topologies import all_healthy, two_nodes_on
from tests.test_churn import retrying, run_flow, server_state, setup_users

# Posts per user: more than the Sentinel test's 150, so that on an idle
# machine too the kill (2 s into the flow) lands while posts are still going.
COUNT = 250


@pytest.fixture
def cluster_nodes():
    topology = ClusterSetup().start()
    with two_nodes_on(topology, ["--redis-cluster", "--redis-url", topology.url]) as nodes:
        yield topology, nodes


def tag(user_id: str) -> str:
    return "{" + user_id + "}"


def holds_user_keys(topology: ClusterSetup, port: int, user_id: str) -> bool:
    """The node on ``port`` has some key under the user's hash tag (the key scheme puts them all there)."""
    with topology.client(port) as c:
        return next(iter(c.scan_iter(match=f"*{tag(user_id)}*", count=1000)), None) is not None


async def test_primary_killed_mid_churn_loses_nothing_silently(cluster_nodes):
    topology, nodes = cluster_nodes
    users = await setup_users(nodes, users=3, per_user=3)
    victim_user = users[0][0]
    old_primary = topology.primary_for_key(tag(victim_user.id))
    on_victim = [u.id for u, _ in users if topology.primary_for_key(tag(u.id)) is old_primary]
    timing: dict[str, float] = {}

    async def kill_primary() -> None:
        # The churn has run 2 s: the victim user's keys are on the primary being killed.
        assert holds_user_keys(topology, old_primary.port, victim_user.id), "the user's keys are elsewhere"
        # The phone's state gains an entry per accepted post: the kill must land mid-run.
        timing["posted_before"] = len(users[0][1][0].state)
        assert timing["posted_before"] < COUNT, "the churn was over before the kill"
        topology.kill(old_primary)
        timing["killed"] = time.monotonic()
        # The cluster's own failover, watched from a thread so the sockets
        # and posters keep running meanwhile.
        timing["cluster"] = await asyncio.to_thread(topology.wait_failover, old_primary, 120)
        # Failover time as the README states it: from the kill until every node
        # answers healthy again (bus re-subscribed, Redis answering). Right
        # after the kill the survivors still call the cluster ok, so health is
        # only polled once the cluster has promoted the replica.
        while not await all_healthy(nodes):
            await asyncio.sleep(0.1)
        timing["healthy"] = time.monotonic()

    posted, actions = await run_flow(nodes, users, count=COUNT, middle=kill_primary)
    new_primary = topology.primary_for_key(tag(victim_user.id))
    assert new_primary is not old_primary and new_primary.proc.poll() is None, "the cluster never promoted the replica"
    print(f"\ncluster failover: kill -> slots on the promoted replica in {timing['cluster']:.1f}s, "
          f"-> every node healthy in {timing['healthy'] - timing['killed']:.1f}s "
          f"({len(on_victim)} of {len(users)} users on the killed shard, "
          f"its first user's phone {timing['posted_before']:.0f}/{COUNT} posts in at the kill)")
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
    assert holds_user_keys(topology, new_primary.port, victim_user.id)
    assert await all_healthy(nodes)


async def users_on_every_shard(topology: ClusterSetup, node: Node) -> dict[int, User]:
    """New users until their slots cover all three primaries (each user is one slot): primary port -> user."""
    by_primary: dict[int, User] = {}
    for _ in range(60):
        user = await new_user(node)
        by_primary.setdefault(topology.primary_for_key(tag(user.id)).port, user)
        if len(by_primary) == 3:
            return by_primary
    raise AssertionError(f"60 users on only {len(by_primary)} shards")


async def test_a_post_through_one_node_reaches_a_socket_on_the_other_on_every_shard(cluster_nodes):
    topology, (node_a, node_b) = cluster_nodes
    by_primary = await users_on_every_shard(topology, node_a)
    keys = Keys()
    for port, user in by_primary.items():
        phone, laptop = await user.device("mobile"), await user.device("web")
        ws = await ws_connect(node_b, user.token, laptop)
        try:
            posted = await user.post(f"to shard {port}", device=phone)  # through node A
            frame = await ws.recv_type("new_notification", timeout=30)
            assert frame["data"]["id"] == posted["id"] and frame["data"]["title"] == f"to shard {port}"
            # And back: an action through node B reaches a socket on node A.
            ws_phone = await ws_connect(node_a, user.token, phone)
            try:
                r = await call(node_b, "PUT", f"/api/v1/notifications/{posted['id']}/action",
                               {"action": "read", "device_id": laptop}, token=user.token)
                assert r.status == 200, r.body
                sync = await ws_phone.recv_type("notification_sync", timeout=30)
                assert sync["data"]["notification_id"] == posted["id"] and sync["data"]["is_read"]
            finally:
                ws_phone.close()
        finally:
            ws.close()
        # The device's stream is on the primary owning the user's slot.
        with topology.client(port) as direct:
            assert direct.xlen(keys.stream(user.id, laptop)) >= 1


async def news_for(ws: WS, nid: str, timeout: float = 30) -> tuple[bool, str | None]:
    """Read ``ws`` until the notification ``nid`` arrives (True) or the server closes it (False).

    Returns the newest stream id seen, for a reconnect's ``last_id``.
    """
    last = None
    while True:
        try:
            frame = await ws.recv(timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"notification {nid} never arrived on an open socket ({timeout:.0f} s)") from None
        if frame is None:
            return False, last
        if frame["type"] in ("new_notification", "notification_sync"):
            last = frame["id"]
            if frame["type"] == "new_notification" and frame["data"]["id"] == nid:
                return True, last


async def test_sockets_and_subscriptions_follow_a_failover(cluster_nodes):
    """After a shard's primary dies, node B's sockets get posts made through node A, on every shard.

    A socket held across the failover either keeps receiving or is closed
    (1013: Redis away) and, reconnected from its last id, gets what it
    missed; a socket opened after the failover gets a later post live, which
    only node B's re-made shard subscription can bring (nothing is read from
    a stream without a wake-up).
    """
    topology, (node_a, node_b) = cluster_nodes
    by_primary = await users_on_every_shard(topology, node_a)
    devices = {port: (await u.device("mobile"), await u.device("web")) for port, u in by_primary.items()}
    held = {port: await ws_connect(node_b, u.token, devices[port][1]) for port, u in by_primary.items()}
    last_ids: dict[int, str | None] = {}
    reconnected: list[int] = []
    try:
        for port, user in by_primary.items():
            nid = (await user.post("before", device=devices[port][0]))["id"]
            got, last_ids[port] = await news_for(held[port], nid)
            assert got, "no delivery before the kill"
        victim = next(iter(by_primary))
        old = next(s for s in topology.servers if s.port == victim)
        topology.kill(old)
        await asyncio.to_thread(topology.wait_failover, old, 120)
        while not await all_healthy([node_a, node_b]):
            await asyncio.sleep(0.1)
        for port, user in by_primary.items():
            phone, laptop = devices[port]
            r = await retrying(lambda: call(node_a, "POST", "/api/v1/notifications",
                                            {"app_name": "A", "title": "after"}, token=user.token,
                                            headers={"X-Device-ID": phone}))
            nid = r.body["id"]
            got, last = await news_for(held[port], nid)
            if not got:  # closed during the failover: reconnect as a client would
                reconnected.append(port)
                held[port].close()
                held[port] = await ws_connect(node_b, user.token, laptop, last_id=last or last_ids[port])
                got, _ = await news_for(held[port], nid)
            assert got, f"the post after the failover never reached the socket (shard of {port})"
            # A fresh socket, then a post: only a live wake-up on node B delivers it.
            fresh = await ws_connect(node_b, user.token, laptop, last_id=nid)
            try:
                # The pong comes once the socket's open (subscribe, replay) is done.
                await fresh.send({"type": "ping", "data": {}})
                await fresh.recv_type("pong", timeout=30)
                nid2 = (await user.post("live", device=phone))["id"]
                got, _ = await news_for(fresh, nid2)
                assert got, f"a socket opened after the failover got no live post (shard of {port})"
            finally:
                fresh.close()
        print(f"\nsockets held across the failover that had to reconnect: {len(reconnected)} of {len(held)}")
    finally:
        for ws in held.values():
            ws.close()
