"""Several nodes sharing one Redis and one database: any node serves any user."""
from __future__ import annotations

import asyncio
import shutil

import pytest
from redis.asyncio import Redis

from store.keys import Keys
from tests.harness import Node, RedisServer, call, new_user, short_tmpdir, ws_connect


@pytest.fixture
def persistent_redis():
    redis = RedisServer(persistent=True).start()
    yield redis
    redis.stop()
    shutil.rmtree(redis.dir, ignore_errors=True)


def start_nodes(redis: RedisServer, count: int = 2, extra: list[str] | None = None) -> list[Node]:
    data_dir = short_tmpdir()
    return [Node(data_dir=data_dir, redis_url=redis.url, extra=list(extra or [])).start() for _ in range(count)]


def stop_nodes(nodes: list[Node]) -> None:
    for n in nodes:
        if n.proc and n.proc.poll() is None:
            assert n.stop() == 0, n.log()
    shutil.rmtree(nodes[0].data_dir, ignore_errors=True)


async def test_delivery_actions_presence_and_stats_across_nodes(redis_server):
    a, b = nodes = start_nodes(redis_server)
    try:
        user = await new_user(a)
        phone, laptop = await user.device("mobile"), await user.device("desktop")
        ws_laptop = await ws_connect(b, user.token, laptop)
        await ws_laptop.send({"type": "ping"})
        await ws_laptop.recv_type("pong")  # set up before the phone's status is published
        ws_phone = await ws_connect(a, user.token, phone)
        # presence crosses nodes: the laptop (on b) hears the phone (on a) come online
        assert (await ws_laptop.recv_type("device_status"))["data"] == {"device_id": phone, "status": "online"}
        # a notification posted on a reaches the laptop on b, not the phone
        n = await user.post("from node a", device=phone)
        frame = await ws_laptop.recv_type("new_notification")
        assert frame["data"]["id"] == n["id"]
        await ws_phone.expect_silence(0.5)
        # an action over the laptop's socket on b syncs to the phone on a
        await ws_laptop.send({"type": "notification_action", "data": {"notification_id": n["id"], "action": "read"}})
        sync = (await ws_phone.recv_type("notification_sync"))["data"]
        assert sync["notification_id"] == n["id"] and sync["is_read"] is True and sync["source_device"] == laptop
        # per-user stats count sockets on every node; node stats only its own
        stats_a = (await user.call("GET", "/api/v1/websocket/users/stats")).body
        assert stats_a["active_connections"] == 2
        node_b = (await call(b, "GET", "/api/v1/websocket/stats", token=user.token)).body
        assert node_b["total_connections"] == 1
        # device list on b sees the phone online through a
        listed = {d["id"]: d["status"] for d in (await call(b, "GET", "/api/v1/devices", token=user.token)).body["devices"]}
        assert listed == {phone: "online", laptop: "online"}
        ws_phone.close()
        assert (await ws_laptop.recv_type("device_status"))["data"] == {"device_id": phone, "status": "offline"}
        ws_laptop.close()
    finally:
        stop_nodes(nodes)


async def test_revoking_on_one_node_closes_sockets_on_another(redis_server):
    a, b = nodes = start_nodes(redis_server)
    try:
        user = await new_user(a)
        tablet = await user.device("web")
        ws = await ws_connect(b, user.token, tablet)
        await ws.send({"type": "ping"})
        await ws.recv_type("pong")
        assert (await user.call("DELETE", f"/api/v1/devices/{tablet}")).status == 204
        assert await ws.wait_closed() == 1008
    finally:
        stop_nodes(nodes)


async def test_dead_node_leaves_no_device_online_past_the_ttl(redis_server):
    # ping interval 2 s -> presence TTL 10 s, refreshed every ~3 s
    a, b = nodes = start_nodes(redis_server, extra=["--ws-ping-interval", "2"])
    try:
        user = await new_user(a)
        phone, laptop = await user.device("mobile"), await user.device("desktop")
        ws_laptop = await ws_connect(b, user.token, laptop)
        await ws_laptop.send({"type": "ping"})
        await ws_laptop.recv_type("pong")  # set up before the phone's status is published
        ws_phone = await ws_connect(a, user.token, phone)
        await ws_laptop.recv_type("device_status")
        a.kill()  # no goodbye: its presence entries just stop being refreshed
        frame = await ws_laptop.recv_type("device_status", timeout=20)
        assert frame["data"] == {"device_id": phone, "status": "offline"}
        listed = {d["id"]: d["status"] for d in (await call(b, "GET", "/api/v1/devices", token=user.token)).body["devices"]}
        assert listed[phone] == "offline"
        ws_laptop.close()
        ws_phone.close()
    finally:
        stop_nodes(nodes)


async def test_redis_restart_with_persistence_loses_nothing_and_needs_no_refetch(persistent_redis):
    a, b = nodes = start_nodes(persistent_redis)
    try:
        user = await new_user(a)
        phone, laptop = await user.device("mobile"), await user.device("desktop")
        ws = await ws_connect(b, user.token, laptop)
        first = await user.post("before restart", device=phone)
        assert (await ws.recv_type("new_notification"))["data"]["id"] == first["id"]
        persistent_redis.restart()
        # the node re-subscribes by itself; posting retries through the outage
        for _ in range(100):
            r = await user.call("POST", "/api/v1/notifications", {"app_name": "X", "title": "after restart"},
                                headers={"X-Device-ID": phone})
            if r.status == 201:
                break
            assert r.status == 503, r.body
            await asyncio.sleep(0.1)
        frames = []
        while not any(f["type"] == "new_notification" for f in frames):
            f = await ws.recv(10)
            assert f is not None, "socket closed"
            frames.append(f)
        assert [f["type"] for f in frames] == ["new_notification"], frames
        assert frames[0]["data"]["title"] == "after restart"
        ws.close()
    finally:
        stop_nodes(nodes)


async def test_device_created_on_one_node_gets_the_next_post_on_another(redis_server):
    a, b = nodes = start_nodes(redis_server)
    try:
        user = await new_user(a)
        phone = await user.device("mobile")
        await user.device("desktop")  # a recipient for the posts
        await user.post("node a now caches the device list", device=phone)
        r = await call(b, "POST", "/api/v1/devices", {"device_name": "tablet", "device_type": "web"}, token=user.token)
        assert r.status == 201, r.body
        tablet = r.body["id"]
        n = await user.post("right after the tablet was added", device=phone)  # on a
        ws = await ws_connect(a, user.token, tablet, last_id="0")
        assert (await ws.recv_type("new_notification"))["data"]["id"] == n["id"]
        ws.close()
    finally:
        stop_nodes(nodes)


async def test_device_revoked_on_one_node_gets_nothing_more_from_another(redis_server):
    a, b = nodes = start_nodes(redis_server)
    try:
        user = await new_user(a)
        phone, tablet = await user.device("mobile"), await user.device("web")
        ws = await ws_connect(a, user.token, tablet)
        first = await user.post("before the revoke", device=phone)  # node a caches the device list
        assert (await ws.recv_type("new_notification"))["data"]["id"] == first["id"]
        assert (await call(b, "DELETE", f"/api/v1/devices/{tablet}", token=user.token)).status == 204
        await user.post("after the revoke", device=phone)  # on a, which still caches the tablet
        assert await ws.wait_closed() == 1008
        assert [f["data"]["id"] for f in ws.frames if f["type"] == "new_notification"] == [first["id"]]
        # nothing was appended to the revoked device's stream after it was dropped
        redis = Redis.from_url(redis_server.url)
        try:
            keys = Keys()
            assert not await redis.exists(keys.stream(user.id, tablet), keys.last(user.id, tablet))
        finally:
            await redis.aclose()
    finally:
        stop_nodes(nodes)


async def test_phone_revoked_on_one_node_cannot_post_on_another(redis_server):
    a, b = nodes = start_nodes(redis_server)
    try:
        user = await new_user(a)
        phone = await user.device("mobile")
        await user.device("desktop")  # a recipient for the posts
        await user.post("node a caches the phone as live", device=phone)
        assert (await call(b, "DELETE", f"/api/v1/devices/{phone}", token=user.token)).status == 204
        r = await user.call("POST", "/api/v1/notifications", {"app_name": "X", "title": "from a revoked phone"},
                            headers={"X-Device-ID": phone})  # on a
        assert r.status == 404, r.body
        listed = (await user.call("GET", "/api/v1/notifications")).body["notifications"]
        assert [n["title"] for n in listed] == ["node a caches the phone as live"]
    finally:
        stop_nodes(nodes)


async def test_a_node_that_stops_marks_all_its_sockets_offline_on_the_others(redis_server):
    # Regression: teardown of many sockets ran on after the node closed its
    # Redis pool, so their presence outlived the node until the TTL expired.
    a, b = nodes = start_nodes(redis_server)
    try:
        user = await new_user(a)
        laptop = await user.device("desktop")
        ws_laptop = await ws_connect(b, user.token, laptop)
        phones = [await user.device("mobile") for _ in range(40)]
        for phone in phones:
            await ws_connect(a, user.token, phone)
        # The upgrade answers before the socket is registered: wait until all 40 are.
        for _ in range(100):
            listed = {d["id"]: d["status"] for d in (await call(b, "GET", "/api/v1/devices", token=user.token)).body["devices"]}
            if all(listed[p] == "online" for p in phones):
                break
            await asyncio.sleep(0.05)
        assert all(listed[p] == "online" for p in phones)
        assert a.stop() == 0, a.log()
        listed = {d["id"]: d["status"] for d in (await call(b, "GET", "/api/v1/devices", token=user.token)).body["devices"]}
        assert [p for p in phones if listed[p] != "offline"] == []
        assert listed[laptop] == "online"
        offline = set()
        while len(offline) < len(phones):
            frame = await ws_laptop.recv_type("device_status", timeout=5)
            if frame["data"]["status"] == "offline":
                offline.add(frame["data"]["device_id"])
        assert offline == set(phones)
        assert "cleanup incomplete" not in a.log()
    finally:
        stop_nodes(nodes)
