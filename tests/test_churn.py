"""No loss under churn: two nodes, many devices connecting and dropping at
random while notifications and actions flow; then every device must hold
exactly the server's state, having seen each message meant for it once
(after dropping repeated ids), in stream order.

A second run restarts Redis (without persistence) in the middle: then each
device must either have received everything or have been told
``sync_required`` — and after refetching over REST as a client would, hold
exactly the server's state.
"""
from __future__ import annotations

import asyncio
import random
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.harness import Node, RedisServer, User, call, new_user, short_tmpdir, ws_connect

STREAM_TYPES = ("new_notification", "notification_sync")


@dataclass
class Device:
    user: User
    id: str
    last_id: str | None = None
    seen: set[str] = field(default_factory=set)
    order: list[str] = field(default_factory=list)  # stream ids, first sightings
    received: list[tuple[str, str, str | None]] = field(default_factory=list)
    state: dict[str, dict[str, bool]] = field(default_factory=dict)
    sync_required: int = 0
    silent: dict[str, bool] = field(default_factory=dict)  # notification id -> its frame's silent flag
    # What this client did itself (its own posts, its own actions): the server
    # never echoes those to it, so a refetch whose snapshot was taken before
    # one of them completed must not make the client forget it.
    own: dict[str, dict[str, bool]] = field(default_factory=dict)

    def did(self, nid: str, is_read: bool = False, is_dismissed: bool = False) -> None:
        for view in (self.state, self.own):
            flags = view.setdefault(nid, {"is_read": False, "is_dismissed": False})
            flags["is_read"] |= is_read
            flags["is_dismissed"] |= is_dismissed

    def apply(self, frame: dict[str, Any]) -> None:
        if frame["id"] in self.seen:
            return  # a repeat: clients drop repeated ids
        self.seen.add(frame["id"])
        self.order.append(frame["id"])
        self.last_id = frame["id"]
        data = frame["data"]
        if frame["type"] == "new_notification":
            self.received.append(("new", data["id"], data["source_device_id"]))
            self.silent[data["id"]] = data.get("silent")
            self.state.setdefault(data["id"], {"is_read": False, "is_dismissed": False})
        else:
            self.received.append(("sync", data["notification_id"], data["source_device"]))
            flags = self.state.setdefault(data["notification_id"], {"is_read": False, "is_dismissed": False})
            flags["is_read"] |= data["is_read"]
            flags["is_dismissed"] |= data["is_dismissed"]

    async def refetch(self, node: Node) -> None:
        self.sync_required += 1
        state = await server_state(self.user, node)
        for nid, own in self.own.items():
            flags = state.setdefault(nid, {"is_read": False, "is_dismissed": False})
            flags["is_read"] |= own["is_read"]
            flags["is_dismissed"] |= own["is_dismissed"]
        self.state = state


async def server_state(user: User, node: Node) -> dict[str, dict[str, bool]]:
    state: dict[str, dict[str, bool]] = {}
    cursor = None
    while True:
        path = "/api/v1/notifications?limit=200" + (f"&before={cursor}" if cursor else "")
        r = await retrying(lambda: call(node, "GET", path, token=user.token))
        for n in r.body["notifications"]:
            state[n["id"]] = {"is_read": n["is_read"], "is_dismissed": n["is_dismissed"]}
        cursor = r.body["next_cursor"]
        if not cursor:
            return state


async def retrying(op: Any, attempts: int = 200) -> Any:
    """Retry through 503s (Redis away), as a real client would."""
    for _ in range(attempts):
        try:
            r = await op()
        except OSError:
            r = None
        if r is not None and r.status < 500:
            return r
        await asyncio.sleep(0.05)
    raise AssertionError(f"still failing: {r.status if r else 'no answer'} {r.body if r else ''}")


async def run_socket(dev: Device, nodes: list[Node], stop: asyncio.Event) -> None:
    """Connect to a random node, stay a random while, drop; repeat until stopped."""
    while not stop.is_set():
        node = random.choice(nodes)
        try:
            ws = await ws_connect(node, dev.user.token, dev.id, last_id=dev.last_id or "0")
        except OSError:
            await asyncio.sleep(0.05)
            continue
        await read_until(ws, dev, node, asyncio.get_running_loop().time() + random.uniform(0.05, 0.5))
        ws.close()
        await asyncio.sleep(random.uniform(0, 0.1))


async def read_until(ws: Any, dev: Device, node: Node, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    while (left := deadline - loop.time()) > 0:
        try:
            frame = await ws.recv(left)
        except asyncio.TimeoutError:
            return
        if frame is None:
            return  # closed by the server (e.g. 1013 while Redis is away)
        if frame["type"] in STREAM_TYPES:
            dev.apply(frame)
        elif frame["type"] == "sync_required":
            await dev.refetch(node)


def variant_post(i: int) -> tuple[str, str]:
    """App and title suffix of post ``i`` in the run with rules and preferences."""
    return ("BlockedApp" if i % 5 == 0 else "Churn"), (" skip" if i % 7 == 0 else "")


async def drive_user(user: User, phone: Device, devices: list[Device], nodes: list[Node],
                     count: int, actions: list[tuple[str, str]], kinds: dict | None = None) -> list[str]:
    """The phone posts ``count`` notifications; other devices act on some of them.

    With ``kinds`` (the run with rules and preferences), apps and titles vary
    (``variant_post``) and each action's kind is recorded there.
    """
    posted: list[str] = []
    for i in range(count):
        node = nodes[i % len(nodes)]
        app, suffix = variant_post(i) if kinds is not None else ("Churn", "")
        body = {"app_name": app, "title": f"{user.email} #{i}{suffix}", "source_key": f"k{i}"}
        r = await retrying(lambda: call(node, "POST", "/api/v1/notifications", body, token=user.token,
                                        headers={"X-Device-ID": phone.id}))
        nid = r.body["id"]
        posted.append(nid)
        phone.did(nid)
        if random.random() < 0.3:
            actor = random.choice(devices)
            target = random.choice(posted)
            if (target, actor.id) in actions:
                continue
            actions.append((target, actor.id))
            action = random.choice(["read", "dismissed", "clicked"])
            if kinds is not None:
                kinds[(target, actor.id)] = action
            r = await retrying(lambda: call(node, "PUT", f"/api/v1/notifications/{target}/action",
                                            {"action": action, "device_id": actor.id}, token=user.token))
            actor.did(target, r.body["is_read"], r.body["is_dismissed"])
        if i % 20 == 0:
            await asyncio.sleep(0.01)
    return posted


async def settle(devices: list[Device], nodes: list[Node]) -> None:
    """Connect every device once more and read until it goes quiet."""
    for dev in devices:
        for _ in range(20):
            node = random.choice(nodes)
            ws = await ws_connect(node, dev.user.token, dev.id, last_id=dev.last_id or "0")
            frame: dict[str, Any] | None = {}
            while frame is not None:
                try:
                    frame = await ws.recv(1.0)
                except asyncio.TimeoutError:
                    break
                if frame is not None and frame["type"] in STREAM_TYPES:
                    dev.apply(frame)
                elif frame is not None and frame["type"] == "sync_required":
                    await dev.refetch(node)
            ws.close()
            if frame is not None:
                break
            # 1013 is "try again later" (e.g. a node still re-syncing after
            # Redis came back); a real client reconnects, so this one does too.
            assert ws.close_code == 1013, f"closed with {ws.close_code} while settling"
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("device could not settle after 20 attempts")


def stream_position(frame_id: str) -> tuple[int, int, int]:
    epoch, _, sid = frame_id.partition(":")
    ms, _, seq = sid.partition("-")
    return int(epoch), int(ms), int(seq)


@pytest.fixture
def cluster():
    redis = RedisServer(persistent=False).start()
    data_dir = short_tmpdir()
    nodes = [Node(data_dir=data_dir, redis_url=redis.url).start() for _ in range(2)]
    yield redis, nodes
    for n in nodes:
        assert n.stop() == 0, n.log()
    redis.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(redis.dir, ignore_errors=True)


async def setup_users(nodes: list[Node], users: int, per_user: int) -> list[tuple[User, list[Device]]]:
    out = []
    for u in range(users):
        user = await new_user(nodes[u % 2])
        devs = [Device(user, await user.device("mobile" if i == 0 else "web")) for i in range(per_user)]
        out.append((user, devs))
    return out


async def run_flow(nodes: list[Node], users: list[tuple[User, list[Device]]], count: int,
                   middle: Any = None, kinds: dict | None = None) -> tuple[list[list[str]], list[list[tuple[str, str]]]]:
    stop = asyncio.Event()
    sockets = [asyncio.ensure_future(run_socket(d, nodes, stop)) for _, devs in users for d in devs]
    actions: list[list[tuple[str, str]]] = [[] for _ in users]
    drivers = [asyncio.ensure_future(drive_user(u, devs[0], devs, nodes, count, actions[i], kinds))
               for i, (u, devs) in enumerate(users)]
    if middle is not None:
        await asyncio.sleep(2.0)
        await middle()
    posted = await asyncio.gather(*drivers)
    stop.set()
    await asyncio.gather(*sockets)
    await settle([d for _, devs in users for d in devs], nodes)
    return list(posted), actions


@pytest.fixture
def mongo_cluster(mongoeco):
    """Two nodes keeping documents in mongoeco over the wire (motor's real
    driver path; a MongoDB-compatible server, not MongoDB)."""
    redis = RedisServer(persistent=False).start()
    data_dir = short_tmpdir()
    url = mongoeco.db_url(f"churn_{uuid.uuid4().hex[:10]}")
    nodes = [Node(data_dir=data_dir, redis_url=redis.url, extra=["--mongo-url", url]).start() for _ in range(2)]
    yield redis, nodes
    for n in nodes:
        assert n.stop() == 0, n.log()
    redis.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(redis.dir, ignore_errors=True)


async def test_no_loss_under_churn_across_two_nodes(cluster):
    await check_no_loss(cluster[1], users=4, count=300)


async def test_no_loss_under_churn_with_mongodb_over_the_wire(mongo_cluster):
    # Smaller: mongoeco is an in-memory Python server, each call several
    # times slower than SQLite here, and a POST makes several of them.
    await check_no_loss(mongo_cluster[1], users=3, count=100)


async def check_no_loss(nodes: list[Node], users: int, count: int) -> None:
    """The churn flow, then every device against the server's state."""
    flow_users = await setup_users(nodes, users=users, per_user=3)
    posted, actions = await run_flow(nodes, flow_users, count=count)
    expected_total = 0
    total = 0
    for (user, devs), ids, acts in zip(flow_users, posted, actions):
        truth = await server_state(user, nodes[0])
        assert set(truth) == set(ids)
        phone = devs[0]
        for dev in devs:
            assert dev.sync_required == 0
            expected = {("new", nid, phone.id) for nid in ids if dev is not phone}
            expected |= {("sync", nid, actor) for nid, actor in acts if actor != dev.id}
            got = dev.received
            assert len(got) == len(set(got)), "the same message arrived under two different ids"
            assert set(got) == expected, f"missing {len(expected - set(got))}, extra {len(set(got) - expected)}"
            positions = [stream_position(i) for i in dev.order]
            assert positions == sorted(positions), "stream order broken"
            if dev is not phone:
                news = [nid for kind, nid, _ in got if kind == "new"]
                assert news == ids, "notifications arrived out of posting order"
            assert dev.state == truth
            total += len(got)
            expected_total += len(expected)
    assert total == expected_total and total >= 2 * users * count  # 2 receivers x count news, plus syncs


async def test_redis_restart_means_everything_or_sync_required(cluster):
    redis, nodes = cluster
    users = await setup_users(nodes, users=3, per_user=3)

    async def restart_redis() -> None:
        redis.restart()  # comes back empty: no persistence configured

    posted, _ = await run_flow(nodes, users, count=150, middle=restart_redis)
    for (user, devs), ids in zip(users, posted):
        truth = await server_state(user, nodes[0])
        assert set(truth) == set(ids), "an accepted notification is missing from the store"
        for dev in devs:
            assert dev.sync_required >= 1, "a device was never told its history was reset"
            assert dev.state == truth, "a device silently misses state"
    health = await call(nodes[0], "GET", "/health")
    assert health.status == 200 and health.body["redis"]["status"] == "ok"


async def test_no_loss_under_churn_with_rules_and_preferences(cluster):
    """Every notification a device is entitled to arrives once, in order; nothing else does.

    Per user: a rule skips the third device for titles with "skip"; the
    second device blocks "Blocked*", mutes "Churn" and takes no dismissals
    made elsewhere.
    """
    _, nodes = cluster
    users = await setup_users(nodes, users=3, per_user=3)
    for user, devs in users:
        r = await user.call("POST", "/api/v1/rules", {"match": {"title_contains": "skip"},
                                                      "action": {"skip_device_ids": [devs[2].id]}})
        assert r.status == 201, r.body
        r = await user.call("PUT", f"/api/v1/devices/{devs[1].id}/preferences", {
            "blocked_apps": ["Blocked*"], "muted_apps": ["churn"], "sync_dismissals": False})
        assert r.status == 200, r.body
    kinds: dict[tuple[str, str], str] = {}
    posted, actions = await run_flow(nodes, users, count=200, kinds=kinds)
    for (user, devs), ids, acts in zip(users, posted, actions):
        assert set(await server_state(user, nodes[0])) == set(ids)
        phone, muted, skipper = devs
        index = {nid: i for i, nid in enumerate(ids)}

        def reaches(dev: Device, nid: str) -> bool:
            app, suffix = variant_post(index[nid])
            return not ((dev is muted and app == "BlockedApp") or (dev is skipper and suffix))

        for dev in devs:
            assert dev.sync_required == 0
            news = [nid for nid in ids if dev is not phone and reaches(dev, nid)]
            expected = {("new", nid, phone.id) for nid in news}
            expected |= {("sync", nid, actor) for nid, actor in acts if actor != dev.id and reaches(dev, nid)
                         and not (dev is muted and kinds[(nid, actor)] == "dismissed")}
            got = dev.received
            assert len(got) == len(set(got)), "the same message arrived under two different ids"
            assert set(got) == expected, f"missing {len(expected - set(got))}, extra {len(set(got) - expected)}"
            positions = [stream_position(i) for i in dev.order]
            assert positions == sorted(positions), "stream order broken"
            assert [nid for kind, nid, _ in got if kind == "new"] == news, "out of posting order"
            assert all(dev.silent[nid] is (dev is muted) for nid in news), "silent per device"
