"""/devices over REST against a real node: register, idempotent ids, list with
presence, rename, revoke, and never a peek at another user's devices."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from tests.harness import new_user, ws_connect
from tests.test_rest_auth import API, assert_error, parse_iso

DEVICE_KEYS = {"id", "device_name", "device_type", "status", "last_seen", "created_at"}


async def create(user, **body):
    return await user.call("POST", f"{API}/devices", body)


async def listed(user) -> dict[str, dict]:
    r = await user.call("GET", f"{API}/devices")
    assert r.status == 200 and set(r.body) == {"devices"}, r.body
    return {d["id"]: d for d in r.body["devices"]}


async def test_create_returns_the_device(node):
    user = await new_user(node)
    before = dt.datetime.now(dt.timezone.utc)
    r = await create(user, device_name="Pixel 8", device_type="mobile", push_token="fcm:abc")
    assert r.status == 201, r.body
    d = dict(r.body)
    # SPEC "Sessions": the device's own session comes with it
    session = d.pop("session")
    assert set(session) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert session["token_type"] == "Bearer" and session["expires_in"] == 900
    assert set(d) == DEVICE_KEYS
    assert str(uuid.UUID(d["id"])) == d["id"]
    assert (d["device_name"], d["device_type"], d["status"], d["last_seen"]) == ("Pixel 8", "mobile", "offline", None)
    assert abs(parse_iso(d["created_at"]) - before) < dt.timedelta(seconds=5)
    assert (await listed(user))[d["id"]] == d
    got = await user.call("GET", f"{API}/devices/{d['id']}")
    assert got.status == 200 and got.body == d
    for kind in ("web", "desktop"):
        assert (await create(user, device_name=kind, device_type=kind)).status == 201


@pytest.mark.parametrize("body, fields", [
    ({"device_name": "x", "device_type": "fridge"}, {"device_type"}),
    ({"device_name": "x", "device_type": "Mobile"}, {"device_type"}),
    ({"device_name": "x"}, {"device_type"}),
    ({"device_type": "web"}, {"device_name"}),
    ({"device_name": "", "device_type": "web"}, {"device_name"}),
    ({"device_name": "x" * 101, "device_type": "web"}, {"device_name"}),
    ({"device_name": 7, "device_type": ["web"]}, {"device_name", "device_type"}),
    ({"device_name": "x", "device_type": "web", "id": "not-a-uuid"}, {"id"}),
    ({"device_name": "x", "device_type": "web", "push_token": 12}, {"push_token"}),
])
async def test_create_rejects_bad_fields(node, body, fields):
    user = await new_user(node)
    assert_error(await user.call("POST", f"{API}/devices", body), 400, fields=fields)
    assert await listed(user) == {}


async def test_client_chosen_id_is_idempotent_for_the_same_user(node):
    user = await new_user(node)
    device_id = str(uuid.uuid4())
    first = await create(user, id=device_id, device_name="Phone", device_type="mobile")
    assert first.status == 201 and first.body["id"] == device_id
    # a retry (even with different fields) gets the stored record back, unchanged
    again = await create(user, id=device_id, device_name="Renamed?", device_type="desktop")
    assert again.status == 200, again.body
    assert {**again.body, "session": None} == {**first.body, "session": None}
    assert again.body["session"]["access_token"] != first.body["session"]["access_token"]  # a new session each time
    assert list(await listed(user)) == [device_id]
    # another user cannot claim the id, nor learn anything about the device
    other = await new_user(node)
    assert_error(await create(other, id=device_id, device_name="Mine", device_type="web"), 409)
    assert await listed(other) == {}
    assert (await listed(user))[device_id]["device_name"] == "Phone"


async def test_list_shows_only_my_live_devices_with_presence(node):
    alice, bob = await new_user(node), await new_user(node)
    phone = await alice.device("mobile", "Phone")
    laptop = await alice.device("desktop", "Laptop")
    gone = await alice.device("web", "Old browser")
    bobs = await bob.device("web", "Bob's")
    assert (await alice.call("DELETE", f"{API}/devices/{gone}")).status == 204
    devices = await listed(alice)
    assert set(devices) == {phone, laptop}
    assert all(set(d) == DEVICE_KEYS and d["status"] == "offline" for d in devices.values())
    assert set(await listed(bob)) == {bobs}

    ws = await ws_connect(node, alice.token, laptop)
    try:
        await ws.send({"type": "ping"})
        await ws.recv_type("pong")
        devices = await listed(alice)
        assert (devices[laptop]["status"], devices[phone]["status"]) == ("online", "offline")
        assert devices[laptop]["last_seen"] is not None
        parse_iso(devices[laptop]["last_seen"])
        assert (await alice.call("GET", f"{API}/devices/{laptop}")).body["status"] == "online"
    finally:
        ws.close()
    await ws.wait_closed()
    for _ in range(50):  # presence clears as soon as the server notices the close
        if (await listed(alice))[laptop]["status"] == "offline":
            break
        await asyncio.sleep(0.05)
    assert (await listed(alice))[laptop]["status"] == "offline"


async def test_rename_and_push_token(node):
    user = await new_user(node)
    r = await create(user, device_name="Phone", device_type="mobile")
    device_id, created = r.body["id"], {k: v for k, v in r.body.items() if k != "session"}
    r = await user.call("PUT", f"{API}/devices/{device_id}", {"device_name": "Work phone"})
    assert r.status == 200, r.body
    assert r.body == {**created, "device_name": "Work phone"}
    r = await user.call("PUT", f"{API}/devices/{device_id}", {"push_token": "fcm:new-token"})
    assert r.status == 200 and r.body["device_name"] == "Work phone"
    r = await user.call("PUT", f"{API}/devices/{device_id}", {"push_token": None})
    assert r.status == 200 and r.body["device_name"] == "Work phone"
    assert (await listed(user))[device_id]["device_name"] == "Work phone"


@pytest.mark.parametrize("body, fields", [
    ({}, None),
    ({"unknown": 1}, None),
    ({"device_name": ""}, {"device_name"}),
    ({"device_name": None}, {"device_name"}),
    ({"device_name": 5}, {"device_name"}),
])
async def test_update_needs_a_valid_field(node, body, fields):
    user = await new_user(node)
    device_id = await user.device("mobile", "Phone")
    assert_error(await user.call("PUT", f"{API}/devices/{device_id}", body), 400, fields=fields)
    assert_error(await user.call("PUT", f"{API}/devices/{device_id}", raw=b""), 400)
    assert (await listed(user))[device_id]["device_name"] == "Phone"


async def test_another_users_device_is_indistinguishable_from_a_missing_one(node):
    owner, snoop = await new_user(node), await new_user(node)
    device_id = await owner.device("mobile", "Private phone")
    random_id = str(uuid.uuid4())
    for method, body in (("GET", None), ("PUT", {"device_name": "pwned"}), ("DELETE", None)):
        theirs = await snoop.call(method, f"{API}/devices/{device_id}", body)
        missing = await snoop.call(method, f"{API}/devices/{random_id}", body)
        assert_error(theirs, 404)
        assert theirs.body == missing.body, method
    # and nothing changed for the owner
    assert (await listed(owner))[device_id]["device_name"] == "Private phone"
    # nor can it be used as a notification source by someone else
    assert_error(await snoop.call("POST", f"{API}/notifications", {"app_name": "x"},
                                  headers={"X-Device-ID": device_id}), 404)


async def test_delete_revokes_the_id_for_good(node):
    user = await new_user(node)
    device_id = str(uuid.uuid4())
    assert (await create(user, id=device_id, device_name="Tablet", device_type="web")).status == 201
    keep = await user.device("desktop")
    r = await user.call("DELETE", f"{API}/devices/{device_id}")
    assert r.status == 204 and r.body is None
    assert_error(await user.call("GET", f"{API}/devices/{device_id}"), 404)
    assert_error(await user.call("PUT", f"{API}/devices/{device_id}", {"device_name": "back"}), 404)
    assert_error(await user.call("DELETE", f"{API}/devices/{device_id}"), 404)
    # re-registering the same id is refused, for its owner too
    assert_error(await create(user, id=device_id, device_name="Tablet", device_type="web"), 409)
    assert list(await listed(user)) == [keep]
    # it can no longer post or act
    assert_error(await user.call("POST", f"{API}/notifications", {"app_name": "x", "source_device_id": device_id}), 404)
