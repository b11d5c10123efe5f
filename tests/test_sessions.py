"""Sessions that can be ended (SPEC "Sessions"): logout, logout everywhere, a revoked device,
a device-bound session, and sockets that live no longer than their token — across two nodes."""
from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any, Iterator

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.harness import WS, Node, RedisServer, User, call, new_user, short_tmpdir, ws_connect

API = "/api/v1"


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[Node, Node]]:
    """Two nodes on one data dir (one store, one embedded redis), short-lived access tokens."""
    data_dir = short_tmpdir()
    a = Node(data_dir=data_dir, extra=["--access-token-ttl", "10"]).start()
    b = Node(data_dir=data_dir, extra=["--access-token-ttl", "10"]).start()
    yield a, b
    assert b.stop() == 0, b.log()
    assert a.stop() == 0, a.log()
    shutil.rmtree(data_dir, ignore_errors=True)


async def login(node: Node, user: User, **extra: Any) -> dict[str, Any]:
    r = await call(node, "POST", f"{API}/auth/login", {"email": user.email, "password": user.password, **extra})
    assert r.status == 200, r.body
    return r.body


async def device_session(node: Node, token: str, device_type: str = "desktop") -> tuple[str, dict[str, Any]]:
    r = await call(node, "POST", f"{API}/devices", {"device_name": device_type, "device_type": device_type}, token=token)
    assert r.status == 201, r.body
    return r.body["id"], r.body["session"]


async def refused_within(node: Node, token: str, seconds: float = 1.0) -> float:
    """Seconds until the token gets 401 on this node (fails past ``seconds``)."""
    start = time.monotonic()
    while True:
        r = await call(node, "GET", f"{API}/devices", token=token)
        if r.status == 401:
            assert r.body["error"]["code"] == "session_ended", r.body
            return time.monotonic() - start
        assert r.status == 200, r.body
        assert time.monotonic() - start < seconds, f"still accepted after {seconds}s"
        await asyncio.sleep(0.05)


async def test_logout_ends_the_session_on_every_node_and_closes_its_sockets(two_nodes) -> None:
    a, b = two_nodes
    user = await new_user(a)
    laptop, laptop_session = await device_session(a, user.token)
    other = await login(a, user)  # another sign-in of the same user: must survive
    assert (await call(b, "GET", f"{API}/devices", token=laptop_session["access_token"])).status == 200  # b caches it
    ws = await ws_connect(b, laptop_session["access_token"], laptop)
    await ws.send({"type": "ping", "id": "1"})
    await ws.recv_type("ack")

    r = await call(a, "POST", f"{API}/auth/logout", token=laptop_session["access_token"])
    assert r.status == 204, r.body
    await refused_within(b, laptop_session["access_token"])
    assert (await call(a, "GET", f"{API}/devices", token=laptop_session["access_token"])).status == 401
    r = await call(b, "POST", f"{API}/auth/refresh", {"refresh_token": laptop_session["refresh_token"]})
    assert r.status == 401, r.body
    assert await ws.wait_closed() == 1008
    assert (await call(b, "GET", f"{API}/devices", token=other["access_token"])).status == 200


async def test_logout_all_ends_every_session_of_the_user(two_nodes) -> None:
    a, b = two_nodes
    user = await new_user(a)
    phone, phone_session = await device_session(a, user.token, "mobile")
    second = await login(b, user)
    stranger = await new_user(a)
    r = await call(b, "POST", f"{API}/auth/logout-all", token=second["access_token"])
    assert r.status == 204, r.body
    for token in (user.token, phone_session["access_token"], second["access_token"]):
        for node in (a, b):
            await refused_within(node, token)
    for refresh in (user.refresh_token, phone_session["refresh_token"], second["refresh_token"]):
        assert (await call(a, "POST", f"{API}/auth/refresh", {"refresh_token": refresh})).status == 401
    assert (await call(a, "GET", f"{API}/devices", token=stranger.token)).status == 200  # nobody else's
    # and signing in again works
    assert (await call(a, "GET", f"{API}/devices", token=(await login(a, user))["access_token"])).status == 200


async def test_revoking_a_device_ends_its_sessions_and_only_those(two_nodes) -> None:
    a, b = two_nodes
    user = await new_user(a)
    laptop, laptop_session = await device_session(a, user.token)
    phone, phone_session = await device_session(a, user.token, "mobile")
    ws = await ws_connect(b, laptop_session["access_token"], laptop)
    await ws.send({"type": "ping", "id": "1"})
    await ws.recv_type("ack")
    # the phone (a device session of its own) revokes the lost laptop
    r = await call(a, "DELETE", f"{API}/devices/{laptop}", token=phone_session["access_token"])
    assert r.status == 204, r.body
    await refused_within(b, laptop_session["access_token"])
    assert (await call(b, "POST", f"{API}/auth/refresh", {"refresh_token": laptop_session["refresh_token"]})).status == 401
    assert await ws.wait_closed() == 1008
    assert (await call(b, "GET", f"{API}/devices", token=phone_session["access_token"])).status == 200
    assert (await call(b, "GET", f"{API}/devices", token=user.token)).status == 200


async def test_a_bound_session_acts_only_as_its_device(two_nodes) -> None:
    a, _ = two_nodes
    user = await new_user(a)
    phone, phone_session = await device_session(a, user.token, "mobile")
    laptop = await user.device("desktop")
    token = phone_session["access_token"]
    # posting defaults to its own device; another device's id is refused
    r = await call(a, "POST", f"{API}/notifications", {"app_name": "Signal", "title": "hi"}, token=token)
    assert r.status == 201 and r.body["source_device_id"] == phone, r.body
    r = await call(a, "POST", f"{API}/notifications", {"app_name": "Signal"}, token=token,
                   headers={"X-Device-ID": laptop})
    assert r.status == 403 and r.body["error"]["code"] == "device_mismatch", r.body
    nid = (await user.post("from the phone", device=phone))["id"]
    r = await call(a, "PUT", f"{API}/notifications/{nid}/action", {"action": "read", "device_id": laptop}, token=token)
    assert r.status == 403, r.body
    # it may still read everything and rename other devices
    assert (await call(a, "GET", f"{API}/notifications/{nid}", token=token)).status == 200
    r = await call(a, "PUT", f"{API}/devices/{laptop}", {"device_name": "Old laptop"}, token=token)
    assert r.status == 200, r.body
    # and it may open a socket only as its device
    ws = await ws_connect(a, token, laptop)
    assert await ws.wait_closed() == 1008
    ws = await ws_connect(a, token, phone)
    await ws.send({"type": "ping", "id": "1"})
    await ws.recv_type("ack")
    ws.close()


async def test_login_with_a_device_id_binds_the_session(two_nodes) -> None:
    a, _ = two_nodes
    user = await new_user(a)
    tablet = await user.device("web")
    r = await call(a, "POST", f"{API}/auth/login", {"email": user.email, "password": user.password,
                                                    "device_id": "00000000-0000-0000-0000-000000000000"})
    assert r.status == 404, r.body
    bound = await login(a, user, device_id=tablet)
    r = await call(a, "POST", f"{API}/notifications", {"app_name": "X"}, token=bound["access_token"])
    assert r.status == 201 and r.body["source_device_id"] == tablet, r.body


async def test_a_socket_closes_when_its_token_expires_unless_it_reauthenticates(two_nodes) -> None:
    a, b = two_nodes  # tokens live 10 s here
    user = await new_user(a)
    laptop, session = await device_session(a, user.token)
    kept = await ws_connect(a, session["access_token"], laptop)
    dropped = await ws_connect(b, session["access_token"], laptop)
    await asyncio.sleep(5)
    fresh = (await call(a, "POST", f"{API}/auth/refresh", {"refresh_token": session["refresh_token"]})).body
    other = await login(a, user)  # a token of another session does not keep this socket
    await kept.send({"type": "reauth", "id": "r0", "data": {"token": other["access_token"]}})
    assert (await kept.recv_type("error"))["data"]["id"] == "r0"
    await kept.send({"type": "reauth", "id": "r1", "data": {"token": fresh["access_token"]}})
    assert (await kept.recv_type("ack"))["data"]["id"] == "r1"
    assert await dropped.wait_closed(timeout=10) == 1008
    await kept.send({"type": "ping", "id": "p"})
    assert (await kept.recv_type("ack"))["data"]["id"] == "p"  # still open past the first token's expiry
    kept.close()


async def test_a_password_change_ends_every_other_session(two_nodes) -> None:
    a, b = two_nodes
    user = await new_user(a)
    other = await login(b, user)
    r = await call(a, "POST", f"{API}/auth/password", {"current_password": "wrong one", "new_password": "n" * 12},
                   token=user.token)
    assert r.status == 403 and r.body["error"]["code"] == "wrong_password", r.body
    r = await call(a, "POST", f"{API}/auth/password", {"current_password": user.password, "new_password": "short"},
                   token=user.token)
    assert r.status == 400 and "new_password" in r.body["error"]["fields"], r.body
    r = await call(a, "POST", f"{API}/auth/password", {"current_password": user.password,
                                                       "new_password": "a new passphrase"}, token=user.token)
    assert r.status == 204, r.body
    await refused_within(b, other["access_token"])
    assert (await call(a, "POST", f"{API}/auth/refresh", {"refresh_token": other["refresh_token"]})).status == 401
    assert (await call(b, "GET", f"{API}/devices", token=user.token)).status == 200  # the caller's own goes on
    r = await call(a, "POST", f"{API}/auth/login", {"email": user.email, "password": user.password})
    assert r.status == 401
    r = await call(a, "POST", f"{API}/auth/login", {"email": user.email, "password": "a new passphrase"})
    assert r.status == 200


async def test_deleting_the_account_removes_everything_and_frees_the_email(two_nodes) -> None:
    a, b = two_nodes
    user = await new_user(a)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    posted = await user.post("a one-time code", device=phone)
    ws = await ws_connect(b, user.token, laptop)
    await ws.send({"type": "ping", "id": "1"})
    await ws.recv_type("ack")
    r = await call(a, "DELETE", f"{API}/account", {"password": "not it"}, token=user.token)
    assert r.status == 403, r.body
    r = await call(a, "DELETE", f"{API}/account", {"password": user.password}, token=user.token)
    assert r.status == 204, r.body
    assert await ws.wait_closed() == 1008
    await refused_within(b, user.token)
    assert (await call(a, "POST", f"{API}/auth/login", {"email": user.email, "password": user.password})).status == 401
    # the email may register again, and the new account sees nothing of the old one
    r = await call(a, "POST", f"{API}/auth/register", {"email": user.email, "password": user.password})
    assert r.status == 201, r.body
    again = await login(a, user)
    r = await call(a, "GET", f"{API}/notifications", token=again["access_token"])
    assert r.status == 200 and r.body["notifications"] == []
    assert (await call(a, "GET", f"{API}/notifications/{posted['id']}", token=again["access_token"])).status == 404
    assert (await call(a, "GET", f"{API}/devices", token=again["access_token"])).body["devices"] == []


async def test_a_ws_ticket_opens_one_socket_once(two_nodes) -> None:
    a, b = two_nodes
    user = await new_user(a)
    laptop, session = await device_session(a, user.token)
    r = await call(a, "POST", f"{API}/auth/ws-ticket", token=session["access_token"])
    assert r.status == 201 and r.body["expires_in"] == 30, r.body
    ticket = r.body["ticket"]
    ws = await ws_connect_ticket(b, ticket, laptop)
    await ws.send({"type": "ping", "id": "1"})
    assert (await ws.recv_type("ack"))["data"]["id"] == "1"
    again = await ws_connect_ticket(a, ticket, laptop)  # single use
    assert await again.wait_closed() == 1008
    # the ticket's socket belongs to its session: ending the session closes it
    assert (await call(a, "POST", f"{API}/auth/logout", token=session["access_token"])).status == 204
    assert await ws.wait_closed() == 1008


async def ws_connect_ticket(node: Node, ticket: str, device_id: str) -> WS:
    conn = await websocket_connect(HTTPRequest(f"{node.ws_base}/ws?ticket={ticket}&device_id={device_id}"))
    return WS(conn)


async def test_a_redis_that_comes_back_empty_logs_nobody_out_and_revives_no_ended_session() -> None:
    redis = RedisServer(persistent=False).start()
    node = Node(redis_url=redis.url).start()
    try:
        user = await new_user(node)
        ended = await login(node, user)
        assert (await call(node, "POST", f"{API}/auth/logout", token=ended["access_token"])).status == 204
        redis.restart()  # all of Redis's data is gone, sessions included
        deadline = time.monotonic() + 15
        while (r := await call(node, "GET", f"{API}/devices", token=user.token)).status != 200:
            assert r.status == 503 and time.monotonic() < deadline, r.body  # only while Redis is away
            await asyncio.sleep(0.1)
        assert (await call(node, "GET", f"{API}/devices", token=ended["access_token"])).status == 401
        r = await call(node, "POST", f"{API}/auth/refresh", {"refresh_token": user.refresh_token})
        assert r.status == 200, r.body
    finally:
        node.stop()
        redis.stop()
        shutil.rmtree(node.data_dir, ignore_errors=True)
        shutil.rmtree(redis.dir, ignore_errors=True)
