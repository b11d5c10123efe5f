"""The WebSocket protocol of SPEC, against a real node on embedded defaults."""
from __future__ import annotations

import asyncio
import json
import shutil

import jwt
import pytest
from tornado.websocket import WebSocketClosedError

from tests.harness import WS, Node, call, new_user, ws_connect


# -- handshake and auth ----------------------------------------------------

async def test_auth_failures_close_with_1008(node):
    user = await new_user(node)
    other = await new_user(node)
    device = await user.device()
    foreign = await other.device()
    revoked = await user.device()
    assert (await user.call("DELETE", f"/api/v1/devices/{revoked}")).status == 204
    forged = jwt.encode({"sub": user.id, "type": "access", "iat": 1, "exp": 4102444800}, "wrong-secret")
    cases = {
        "no token": (None, device),
        "garbage token": ("not-a-jwt", device),
        "forged token": (forged, device),
        "refresh token used as access": (user.refresh_token, device),
        "no device": (user.token, None),
        "unknown device": (user.token, "6a1d3c1e-1111-4111-8111-111111111111"),
        "another user's device": (user.token, foreign),
        "revoked device": (user.token, revoked),
    }
    for label, (token, device_id) in cases.items():
        ws = await ws_connect(node, token, device_id)
        code = await ws.wait_closed()
        assert code == 1008, f"{label}: closed with {code}"
        assert ws.conn.close_reason, label


async def test_plain_http_get_on_ws_gets_a_json_error(node):
    r = await call(node, "GET", "/ws")
    assert r.status == 400
    assert r.body["error"]["code"] == "bad_request" and "upgrade" in r.body["error"]["message"].lower()


async def test_token_in_authorization_header(node):
    user = await new_user(node)
    device = await user.device()
    ws = await ws_connect(node, None, device, headers={"Authorization": f"Bearer {user.token}"})
    await ws.send({"type": "ping"})
    assert (await ws.recv_type("pong"))["data"]["timestamp"].endswith("Z")
    ws.close()


async def test_ping_pong_ack_and_error_frames_keep_socket_open(node):
    user = await new_user(node)
    device = await user.device()
    ws = await ws_connect(node, user.token, device)
    await ws.send({"type": "ping", "id": "p1"})
    pong = await ws.recv_type("pong")
    assert set(pong) >= {"type", "data", "timestamp"}
    assert (await ws.recv_type("ack"))["data"]["id"] == "p1"

    await ws.send("this is not json")
    assert (await ws.recv_type("error"))["data"]["code"] == "invalid_json"
    await ws.send({"type": "teleport", "id": "t1"})
    err = (await ws.recv_type("error"))["data"]
    assert err["code"] == "unknown_type" and err["id"] == "t1"
    await ws.send({"type": "notification_action", "id": "a1", "data": {"notification_id": "nope", "action": "read"}})
    err = (await ws.recv_type("error"))["data"]
    assert err["code"] == "notification_not_found" and err["id"] == "a1"
    await ws.send({"type": "notification_action", "id": "a2", "data": {"action": "explode"}})
    err = (await ws.recv_type("error"))["data"]
    assert err["code"] == "validation_error" and {"notification_id", "action"} <= set(err["fields"])
    await ws.send({"type": "new_notification", "id": "n1", "data": {"title": "no app"}})
    err = (await ws.recv_type("error"))["data"]
    assert err["code"] == "validation_error" and "app_name" in err["fields"]

    # still open and working after all of that
    await ws.send({"type": "ping"})
    await ws.recv_type("pong")
    assert ws.close_code is None
    ws.close()


async def test_oversized_frame_closes_with_1009(node):
    user = await new_user(node)
    ws = await ws_connect(node, user.token, await user.device())
    await ws.send({"type": "ping", "pad": "x" * (65 * 1024)})
    assert await ws.wait_closed() == 1009


async def test_frame_flood_is_refused_then_closed_with_1008(node):
    user = await new_user(node)
    ws = await ws_connect(node, user.token, await user.device())
    for _ in range(400):
        try:
            await ws.send({"type": "ping"})
        except WebSocketClosedError:
            break  # the server hung up mid-flood, as it should
    assert await ws.wait_closed(10) == 1008
    assert any(f["type"] == "error" and f["data"]["code"] == "rate_limited" for f in ws.frames)


async def _ping_flood(node: Node, frames: int) -> WS:
    """Send ``frames`` pings back to back; return once each got a pong or a refusal."""
    user = await new_user(node)
    ws = await ws_connect(node, user.token, await user.device())
    for _ in range(frames):
        await ws.send({"type": "ping"})
    while sum(_counts(ws)) < frames:
        assert await ws.recv(10) is not None, f"closed with {ws.close_code}"
    return ws


def _counts(ws: WS) -> tuple[int, int]:
    pongs = sum(1 for f in ws.frames if f["type"] == "pong")
    limited = sum(1 for f in ws.frames if f["type"] == "error" and f["data"]["code"] == "rate_limited")
    return pongs, limited


async def test_ws_rate_limit_flag_sets_the_rate_and_burst():
    # 5 frames/s -> a burst of 20: a flood of 45 gets about 20 answers, the rest refused
    node = Node(extra=["--ws-rate-limit", "5"]).start()
    try:
        ws = await _ping_flood(node, 45)
        pongs, limited = _counts(ws)
        assert 20 <= pongs <= 23 and pongs + limited == 45, (pongs, limited)
        assert ws.close_code is None  # under the 50 consecutive refusals that close it
        ws.close()
    finally:
        assert node.stop() == 0, node.log()
        shutil.rmtree(node.data_dir, ignore_errors=True)


async def test_ws_rate_limit_zero_disables_it():
    node = Node(env={"NOTISYNC_WS_RATE_LIMIT": "0"}).start()
    try:
        ws = await _ping_flood(node, 600)  # 3x the default burst, and past the abuse limit
        assert _counts(ws) == (600, 0)
        assert ws.close_code is None
        ws.close()
    finally:
        assert node.stop() == 0, node.log()
        shutil.rmtree(node.data_dir, ignore_errors=True)


@pytest.mark.parametrize("flags, loop", [([], "uvloop"), (["--event-loop", "asyncio"], "asyncio")])
async def test_node_mirrors_and_stops_cleanly_on_either_event_loop(flags, loop):
    # uvloop is the default (a dependency wherever it builds); asyncio stays selectable.
    node = Node(extra=flags).start()
    try:
        assert f"event loop: {loop})" in node.log()
        user = await new_user(node)
        phone, laptop = await user.device("mobile"), await user.device("desktop")
        ws_laptop = await ws_connect(node, user.token, laptop)
        ws_phone = await ws_connect(node, user.token, phone)
        await ws_phone.send({"type": "new_notification", "id": "n1", "data": {"app_name": "Signal", "title": "hi"}})
        ack = (await ws_phone.recv_type("ack"))["data"]
        assert (await ws_laptop.recv_type("new_notification"))["data"]["id"] == ack["notification_id"]
        ws_phone.close()
        ws_laptop.close()
    finally:
        assert node.stop() == 0, node.log()
        shutil.rmtree(node.data_dir, ignore_errors=True)


# -- mirroring -------------------------------------------------------------

async def test_notification_reaches_every_other_device_never_the_phone(node):
    user = await new_user(node)
    phone, laptop, tablet = await user.device("mobile"), await user.device("desktop"), await user.device("web")
    socks = {d: await ws_connect(node, user.token, d) for d in (phone, laptop, tablet)}
    posted = await user.post("Build green", device=phone, body="all 212 tests passed")
    for d in (laptop, tablet):
        frame = await socks[d].recv_type("new_notification")
        assert frame["data"]["id"] == posted["id"]
        assert frame["data"]["title"] == "Build green"
        assert isinstance(frame["id"], str) and frame["id"]
    await socks[phone].expect_silence()
    for ws in socks.values():
        ws.close()


async def test_notification_over_the_phone_socket_is_stored_and_mirrored(node):
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    ws_phone = await ws_connect(node, user.token, phone)
    ws_laptop = await ws_connect(node, user.token, laptop)
    await ws_phone.send({"type": "new_notification", "id": "c1",
                         "data": {"app_name": "Signal", "title": "Ana", "body": "lunch?", "source_key": "k1"}})
    ack = (await ws_phone.recv_type("ack"))["data"]
    assert ack["id"] == "c1" and ack["notification_id"]
    got = await ws_laptop.recv_type("new_notification")
    assert got["data"]["id"] == ack["notification_id"] and got["data"]["source_device_id"] == phone
    stored = await user.call("GET", f"/api/v1/notifications/{ack['notification_id']}")
    assert stored.status == 200 and stored.body["body"] == "lunch?"
    # the phone retries the same notification: same id, nothing sent again
    await ws_phone.send({"type": "new_notification", "id": "c2",
                         "data": {"app_name": "Signal", "title": "Ana", "body": "lunch?", "source_key": "k1"}})
    ack2 = (await ws_phone.recv_type("ack"))["data"]
    assert ack2["notification_id"] == ack["notification_id"] and ack2["created"] is False
    await ws_laptop.expect_silence()
    await ws_phone.expect_silence()


async def test_a_burst_of_every_frame_size_arrives_whole_and_in_order(node):
    # Frames queued in one loop turn leave in one write (handlers/outbox.py):
    # short and 16-bit length headers, up to the largest frame there can be.
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    ws_phone = await ws_connect(node, user.token, phone)
    ws_laptop = await ws_connect(node, user.token, laptop)
    # The largest frame a client may send: 64 KiB of raw UTF-8.
    big = {"app_name": "🔔" * 200, "title": "🔔" * 1000, "source_key": "k" * 512, "body": ""}
    room = 65_536 - len(json.dumps({"type": "new_notification", "id": "b9", "data": big}, ensure_ascii=False).encode())
    big["body"] = "🔔" * (room // 4)
    bodies = ["hi", "x" * 300, "y" * 70, "é" * 16000, big["body"], ""]
    for i, body in enumerate(bodies):
        data = big if i == 4 else {"app_name": "Burst", "title": "t", "body": body}
        await ws_phone.send(json.dumps({"type": "new_notification", "id": f"b{i}", "data": data}, ensure_ascii=False))
    acks = [(await ws_phone.recv_type("ack"))["data"]["id"] for _ in bodies]
    assert acks == [f"b{i}" for i in range(len(bodies))]  # Tornado handles a socket's frames in turn
    got = [await ws_laptop.recv_type("new_notification") for _ in bodies]
    assert [f["data"]["body"] for f in got] == bodies
    await ws_laptop.expect_silence()
    ws_phone.close()
    ws_laptop.close()


async def test_action_syncs_to_all_others_never_itself(node):
    user = await new_user(node)
    phone, laptop, tablet = await user.device("mobile"), await user.device("desktop"), await user.device("web")
    n = await user.post("Meeting", device=phone)
    socks = {d: await ws_connect(node, user.token, d) for d in (phone, laptop, tablet)}
    for d in (laptop, tablet):
        await socks[d].recv_type("new_notification")  # queued while offline
    await socks[laptop].send({"type": "notification_action", "id": "x",
                              "data": {"notification_id": n["id"], "action": "dismissed"}})
    assert (await socks[laptop].recv_type("ack"))["data"]["id"] == "x"
    for d in (phone, tablet):
        sync = (await socks[d].recv_type("notification_sync"))["data"]
        assert sync == {"notification_id": n["id"], "is_read": False, "is_dismissed": True, "source_device": laptop}
    await socks[laptop].expect_silence()
    stored = (await user.call("GET", f"/api/v1/notifications/{n['id']}")).body
    assert stored["is_dismissed"] is True and stored["is_read"] is False
    # a REST action from the phone reaches the laptop and the tablet, not the phone
    r = await user.call("PUT", f"/api/v1/notifications/{n['id']}/action", {"action": "clicked", "device_id": phone})
    assert r.status == 200 and r.body["is_read"] is True and r.body["is_dismissed"] is True
    for d in (laptop, tablet):
        assert (await socks[d].recv_type("notification_sync"))["data"]["is_read"] is True
    await socks[phone].expect_silence()
    for ws in socks.values():
        ws.close()


async def test_other_users_never_see_anything(node):
    alice, bob = await new_user(node), await new_user(node)
    bob_ws = await ws_connect(node, bob.token, await bob.device())
    await alice.device()
    await alice.post("private")
    await bob_ws.expect_silence(0.7)
    bob_ws.close()


# -- presence, revocation, stats ----------------------------------------------

async def test_device_status_online_and_offline(node):
    user = await new_user(node)
    laptop, phone = await user.device("desktop"), await user.device("mobile")
    ws_laptop = await ws_connect(node, user.token, laptop)
    await ws_laptop.send({"type": "ping"})
    await ws_laptop.recv_type("pong")  # the laptop is fully set up before the phone appears
    ws_phone = await ws_connect(node, user.token, phone)
    status = (await ws_laptop.recv_type("device_status"))["data"]
    assert status == {"device_id": phone, "status": "online"}
    devices = {d["id"]: d["status"] for d in (await user.call("GET", "/api/v1/devices")).body["devices"]}
    assert devices == {laptop: "online", phone: "online"}
    # a second socket of the same device changes nothing; closing one of two neither
    ws_phone2 = await ws_connect(node, user.token, phone)
    await ws_phone2.send({"type": "ping"})
    await ws_phone2.recv_type("pong")  # registered: frames are handled only after setup
    ws_phone.close()
    await ws_laptop.expect_silence(0.7, ignore=())
    ws_phone2.close()
    status = (await ws_laptop.recv_type("device_status"))["data"]
    assert status == {"device_id": phone, "status": "offline"}
    devices = {d["id"]: d["status"] for d in (await user.call("GET", "/api/v1/devices")).body["devices"]}
    assert devices[phone] == "offline"
    ws_laptop.close()


async def test_revoking_a_device_closes_its_sockets_with_1008(node):
    user = await new_user(node)
    laptop, tablet = await user.device("desktop"), await user.device("web")
    ws = await ws_connect(node, user.token, tablet)
    await ws.send({"type": "ping"})
    await ws.recv_type("pong")
    r = await user.call("DELETE", f"/api/v1/devices/{tablet}")
    assert r.status == 204
    assert await ws.wait_closed() == 1008
    # its id is refused from then on, and it receives nothing more
    again = await ws_connect(node, user.token, tablet)
    assert await again.wait_closed() == 1008
    r = await user.call("POST", "/api/v1/devices", {"id": tablet, "device_name": "x", "device_type": "web"})
    assert r.status == 409
    await user.post("after revoke")
    ids = [d["id"] for d in (await user.call("GET", "/api/v1/devices")).body["devices"]]
    assert ids == [laptop]


async def test_stats_count_connections(node):
    user = await new_user(node)
    d1, d2 = await user.device(), await user.device()
    socks = [await ws_connect(node, user.token, d1), await ws_connect(node, user.token, d1),
             await ws_connect(node, user.token, d2)]
    for ws in socks:
        await ws.send({"type": "ping"})
        await ws.recv_type("pong")
    mine = (await user.call("GET", "/api/v1/websocket/users/stats")).body
    assert mine["user_id"] == user.id and mine["active_connections"] == 3 and mine["timestamp"].endswith("Z")
    total = (await user.call("GET", "/api/v1/websocket/stats")).body
    assert total["total_connections"] >= 3
    health = (await call(node, "GET", "/health")).body
    assert health["websocket"]["connections"] >= 3
    for ws in socks:
        ws.close()
    await asyncio.sleep(0.5)
    assert (await user.call("GET", "/api/v1/websocket/users/stats")).body["active_connections"] == 0
