"""Device API keys (SPEC "Phones, bulk actions, counts"): a phone or an automation
app holding only a key posts, updates and dismisses; revoking the key or its device
ends it on every node within a second, sockets included."""
from __future__ import annotations

import shutil
import uuid
from typing import Any, Iterator

import pytest

from tests.harness import Node, call, new_user, short_tmpdir, ws_connect
from tests.test_rest_auth import assert_error, parse_iso
from tests.test_sessions import refused_within

API = "/api/v1"


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[Node, Node]]:
    """Two nodes on one data dir: one store, one embedded redis."""
    data_dir = short_tmpdir()
    a = Node(data_dir=data_dir).start()
    b = Node(data_dir=data_dir).start()
    yield a, b
    assert b.stop() == 0, b.log()
    assert a.stop() == 0, a.log()
    shutil.rmtree(data_dir, ignore_errors=True)


async def make_key(user, device: str, name: str | None = "Tasker") -> dict[str, Any]:
    r = await user.call("POST", f"{API}/devices/{device}/api-keys", {"name": name} if name else None)
    assert r.status == 201, r.body
    return r.body


async def test_a_key_is_shown_once_listed_without_it_and_deleted(node) -> None:
    user = await new_user(node)
    phone = await user.device("mobile", "Pixel")
    created = await make_key(user, phone)
    assert set(created) == {"id", "name", "key", "created_at"}
    assert created["name"] == "Tasker" and created["key"].startswith("nsk_") and len(created["key"]) > 40
    assert str(uuid.UUID(created["id"])) == created["id"]
    parse_iso(created["created_at"])
    unnamed = await make_key(user, phone, name=None)  # no body at all: the name is optional
    assert unnamed["name"] is None and unnamed["key"] != created["key"]
    r = await user.call("GET", f"{API}/devices/{phone}/api-keys")
    assert r.status == 200, r.body
    assert r.body == {"api_keys": [
        {"id": created["id"], "name": "Tasker", "created_at": created["created_at"], "last_used_at": None},
        {"id": unnamed["id"], "name": None, "created_at": unnamed["created_at"], "last_used_at": None},
    ]}
    r = await user.call("DELETE", f"{API}/devices/{phone}/api-keys/{created['id']}")
    assert r.status == 204, r.body
    assert_error(await user.call("DELETE", f"{API}/devices/{phone}/api-keys/{created['id']}"), 404, "api_key_not_found")
    r = await user.call("GET", f"{API}/devices/{phone}/api-keys")
    assert [k["id"] for k in r.body["api_keys"]] == [unnamed["id"]]
    assert_error(await call(node, "GET", f"{API}/devices", token=created["key"]), 401)


async def test_bad_input_and_other_users_devices(node) -> None:
    user, other = await new_user(node), await new_user(node)
    phone = await user.device("mobile")
    theirs = await other.device("mobile")
    for body in ({"name": ""}, {"name": "x" * 101}, {"name": 5}):
        assert_error(await user.call("POST", f"{API}/devices/{phone}/api-keys", body), 400, fields={"name"})
    assert_error(await user.call("POST", f"{API}/devices/{phone}/api-keys", raw=b"{nope"), 400, "invalid_json")
    for method in ("GET", "POST"):
        assert_error(await user.call(method, f"{API}/devices/{theirs}/api-keys"), 404, "device_not_found")
        assert_error(await user.call(method, f"{API}/devices/{uuid.uuid4()}/api-keys"), 404, "device_not_found")
    key = await make_key(other, theirs)
    assert_error(await user.call("DELETE", f"{API}/devices/{theirs}/api-keys/{key['id']}"), 404)
    assert_error(await user.call("DELETE", f"{API}/devices/{phone}/api-keys/{key['id']}"), 404, "api_key_not_found")
    assert (await call(node, "GET", f"{API}/devices", token=key["key"])).status == 200  # still works
    for bogus in ("nsk_", "nsk_" + "A" * 43, key["key"] + "x"):
        assert_error(await call(node, "GET", f"{API}/devices", token=bogus), 401)
    assert_error(await call(node, "GET", f"{API}/devices", token="nsk_\u00e9"), 401)


async def test_at_most_ten_keys_per_device(node) -> None:
    user = await new_user(node)
    phone, tablet = await user.device("mobile"), await user.device("mobile")
    keys = [await make_key(user, phone, f"k{i}") for i in range(10)]
    assert_error(await user.call("POST", f"{API}/devices/{phone}/api-keys", {}), 409, "too_many_api_keys")
    await make_key(user, tablet)  # per device
    assert (await user.call("DELETE", f"{API}/devices/{phone}/api-keys/{keys[0]['id']}")).status == 204
    await make_key(user, phone)


async def test_a_phone_with_only_a_key_posts_updates_and_dismisses(node) -> None:
    user = await new_user(node)
    phone = await user.device("mobile", "Pixel")
    laptop = await user.device("desktop", "Laptop")
    key = (await make_key(user, phone))["key"]
    laptop_ws = await ws_connect(node, (await make_key(user, laptop))["key"], laptop)
    # the key's socket for the phone, as the key's own device only
    phone_ws = await ws_connect(node, key, phone)
    await phone_ws.send({"type": "ping", "id": "p"})
    await phone_ws.recv_type("ack")
    wrong = await ws_connect(node, key, laptop)
    assert await wrong.wait_closed() == 1008

    body = {"app_name": "WhatsApp", "title": "Anna", "body": "Lunch?", "source_key": "0|com.whatsapp|1|null|10001"}
    r = await call(node, "POST", f"{API}/notifications", body, token=key)
    assert r.status == 201, r.body
    note = r.body
    assert note["source_device_id"] == phone  # the key acts as its device
    got = await laptop_ws.recv_type("new_notification")
    assert got["data"]["id"] == note["id"]
    again = await call(node, "POST", f"{API}/notifications", body, token=key)  # a retry: same record
    assert again.status == 200 and again.body["id"] == note["id"]
    r = await call(node, "PUT", f"{API}/notifications/{note['id']}/action", {"action": "dismissed"}, token=key)
    assert r.status == 200 and r.body["is_dismissed"] is True
    sync = await laptop_ws.recv_type("notification_sync")
    assert sync["data"]["notification_id"] == note["id"] and sync["data"]["source_device"] == phone
    # posting as another device is refused
    r = await call(node, "POST", f"{API}/notifications", body, token=key, headers={"X-Device-ID": laptop})
    assert_error(r, 403, "device_mismatch")
    # the use is recorded, and the phone counts as seen
    keys = (await user.call("GET", f"{API}/devices/{phone}/api-keys")).body["api_keys"]
    assert keys[0]["last_used_at"] is not None
    devices = {d["id"]: d for d in (await user.call("GET", f"{API}/devices")).body["devices"]}
    assert devices[phone]["last_seen"] is not None
    # a key refreshes nothing
    assert_error(await call(node, "POST", f"{API}/auth/refresh", {"refresh_token": key}), 401)
    laptop_ws.close()
    phone_ws.close()


async def test_revoking_a_key_ends_it_on_every_node_and_closes_its_sockets(two_nodes) -> None:
    a, b = two_nodes
    user = await new_user(a)
    phone = await user.device("mobile")
    doomed, kept = await make_key(user, phone, "doomed"), await make_key(user, phone, "kept")
    assert (await call(b, "GET", f"{API}/devices", token=doomed["key"])).status == 200  # b has it cached
    ws = await ws_connect(b, doomed["key"], phone)
    await ws.send({"type": "ping", "id": "1"})
    await ws.recv_type("ack")
    r = await call(a, "DELETE", f"{API}/devices/{phone}/api-keys/{doomed['id']}", token=user.token)
    assert r.status == 204, r.body
    await refused_within(b, doomed["key"])
    assert (await call(a, "GET", f"{API}/devices", token=doomed["key"])).status == 401
    assert await ws.wait_closed() == 1008
    assert (await call(b, "GET", f"{API}/devices", token=kept["key"])).status == 200


async def test_revoking_the_device_ends_its_keys(two_nodes) -> None:
    a, b = two_nodes
    user = await new_user(a)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    key = await make_key(user, phone)
    other = await make_key(user, laptop)
    ws = await ws_connect(b, key["key"], phone)
    await ws.send({"type": "ping", "id": "1"})
    await ws.recv_type("ack")
    # the laptop's own key may revoke the lost phone (like any bound session)
    assert (await call(a, "DELETE", f"{API}/devices/{phone}", token=other["key"])).status == 204
    await refused_within(b, key["key"])
    assert await ws.wait_closed() == 1008
    assert_error(await user.call("GET", f"{API}/devices/{phone}/api-keys"), 404, "device_not_found")
    assert (await call(b, "GET", f"{API}/devices", token=other["key"])).status == 200


async def test_logging_out_everywhere_ends_keys_too(node) -> None:
    user = await new_user(node)
    phone = await user.device("mobile")
    key = await make_key(user, phone)
    assert (await call(node, "POST", f"{API}/auth/logout-all", token=user.token)).status == 204
    await refused_within(node, key["key"])
    fresh = await call(node, "POST", f"{API}/auth/login", {"email": user.email, "password": user.password})
    r = await call(node, "GET", f"{API}/devices/{phone}/api-keys", token=fresh.body["access_token"])
    assert r.status == 200 and r.body == {"api_keys": []}  # an ended key is not listed as if it worked


async def test_a_key_request_over_the_body_limit_is_413_not_a_new_key(node) -> None:
    user = await new_user(node)
    phone = await user.device("mobile")
    r = await user.call("POST", f"{API}/devices/{phone}/api-keys", raw=b'{"name": "' + b"x" * 70_000 + b'"}')
    assert_error(r, 413)
    assert (await user.call("GET", f"{API}/devices/{phone}/api-keys")).body == {"api_keys": []}
