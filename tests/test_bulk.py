"""Counts and bulk actions (SPEC "Phones, bulk actions, counts") on a real node:
server-side counts, bulk read/dismiss by ids or filter with each change synced to
the other devices exactly like a single action, and the history filter."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from tests.harness import call, new_user, ws_connect
from tests.test_rest_auth import assert_error

API = "/api/v1"


async def counts(user) -> dict:
    r = await user.call("GET", f"{API}/notifications/counts")
    assert r.status == 200, r.body
    return r.body


async def bulk(user, **body):
    return await user.call("POST", f"{API}/notifications/actions", body)


async def test_counts_are_server_side_and_cover_live_undismissed(node) -> None:
    user = await new_user(node)
    phone = await user.device("mobile")
    assert await counts(user) == {"total": 0, "unread": 0, "by_category": {"Work": 0, "Personal": 0, "Junk": 0},
                                  "by_app": []}
    posted = [await user.post(f"m{i}", phone, app_name="Mail", category="Work") for i in range(60)]
    chat = await user.post("hi", phone, app_name="Chat")
    await user.post("ad", phone, app_name="Ads", category="Junk")
    await user.call("PUT", f"{API}/notifications/{posted[0]['id']}/action", {"action": "read"})
    await user.call("PUT", f"{API}/notifications/{chat['id']}/action", {"action": "dismissed"})
    assert await counts(user) == {
        "total": 61, "unread": 60, "by_category": {"Work": 60, "Personal": 0, "Junk": 1},
        "by_app": [{"app_name": "Mail", "unread": 59}, {"app_name": "Ads", "unread": 1}],
    }
    other = await new_user(node)
    assert (await counts(other))["total"] == 0


async def test_bulk_read_by_ids_syncs_each_change_once(node) -> None:
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    notes = [await user.post(f"n{i}", phone) for i in range(5)]
    r = await user.call("POST", f"{API}/devices", {"device_name": "tab", "device_type": "mobile"})
    tablet_session = r.body["session"]["access_token"]
    tablet = r.body["id"]
    laptop_ws = await ws_connect(node, user.token, laptop)
    for _ in notes:
        await laptop_ws.recv_type("new_notification")
    await user.call("PUT", f"{API}/notifications/{notes[0]['id']}/action", {"action": "read", "device_id": phone})
    first = await laptop_ws.recv_type("notification_sync")
    assert first["data"]["notification_id"] == notes[0]["id"]
    # the tablet marks three read, one of them already read and one unknown id
    ids = [n["id"] for n in notes[:3]] + [str(uuid.uuid4())]
    r = await call(node, "POST", f"{API}/notifications/actions", {"action": "read", "ids": ids}, token=tablet_session)
    assert r.status == 200 and r.body == {"updated": 2}, r.body
    synced = [await laptop_ws.recv_type("notification_sync") for _ in range(2)]
    assert sorted(f["data"]["notification_id"] for f in synced) == sorted(n["id"] for n in notes[1:3])
    assert all(f["data"]["is_read"] and f["data"]["source_device"] == tablet for f in synced)
    assert all(f.get("id") for f in synced)  # on the stream, like any single action's sync
    await laptop_ws.expect_silence(0.5)
    # the tablet did not receive its own changes, but it gets the earlier ones on connect
    tablet_ws = await ws_connect(node, tablet_session, tablet)
    got = [await tablet_ws.recv_type("notification_sync")]
    assert got[0]["data"]["notification_id"] == notes[0]["id"]
    await tablet_ws.expect_silence(0.5, ignore=("device_status", "new_notification"))
    r = await call(node, "POST", f"{API}/notifications/actions", {"action": "read", "ids": ids}, token=tablet_session)
    assert r.body == {"updated": 0}  # a repeat changes nothing and sends nothing
    await laptop_ws.expect_silence(0.5)
    state = {n["id"]: n for n in (await user.call("GET", f"{API}/notifications")).body["notifications"]}
    assert [state[n["id"]]["is_read"] for n in notes] == [True, True, True, False, False]
    laptop_ws.close()
    tablet_ws.close()


async def test_bulk_by_filter_clears_all_and_history_keeps_them(node) -> None:
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    old = await user.post("old mail", phone, app_name="Mail")
    await asyncio.sleep(0.01)
    cutoff = dt.datetime.now(dt.timezone.utc)
    await asyncio.sleep(0.01)
    new = await user.post("new mail", phone, app_name="Mail")
    chat = await user.post("chat", phone, app_name="Chat", category="Work")
    laptop_ws = await ws_connect(node, user.token, laptop)
    for _ in range(3):
        await laptop_ws.recv_type("new_notification")
    r = await bulk(user, action="dismissed", app_name="Mail", before=cutoff.isoformat())
    assert r.status == 200 and r.body == {"updated": 1}, r.body
    sync = await laptop_ws.recv_type("notification_sync")
    assert sync["data"]["notification_id"] == old["id"] and sync["data"]["is_dismissed"] is True
    r = await bulk(user, action="read", category="Work", device_id=phone)
    assert r.body == {"updated": 1}
    sync = await laptop_ws.recv_type("notification_sync")
    assert sync["data"] == {"notification_id": chat["id"], "is_read": True, "is_dismissed": False,
                            "source_device": phone}
    # clear all
    r = await bulk(user, action="dismissed", all=True)
    assert r.body == {"updated": 2}
    assert (await counts(user))["total"] == 0
    listed = lambda r: [n["id"] for n in r.body["notifications"]]  # noqa: E731
    history = await user.call("GET", f"{API}/notifications?is_dismissed=true")
    assert listed(history) == [chat["id"], new["id"], old["id"]]
    assert listed(await user.call("GET", f"{API}/notifications?is_dismissed=false")) == []
    assert len(listed(await user.call("GET", f"{API}/notifications"))) == 3  # default: both
    assert_error(await user.call("GET", f"{API}/notifications?is_dismissed=maybe"), 400, fields={"is_dismissed"})
    laptop_ws.close()


@pytest.mark.parametrize("body, fields", [
    ({"action": "read"}, {"_schema"}),
    ({"ids": ["x"]}, {"action"}),
    ({"action": "clicked", "ids": ["x"]}, {"action"}),
    ({"action": "read", "ids": []}, {"ids"}),
    ({"action": "read", "ids": "abc"}, {"ids"}),
    ({"action": "read", "ids": [5]}, {"ids"}),
    ({"action": "read", "ids": ["x"] * 501}, {"ids"}),
    ({"action": "read", "category": "Spam"}, {"category"}),
    ({"action": "read", "app_name": ""}, {"app_name"}),
    ({"action": "read", "before": "yesterday"}, {"before"}),
    ({"action": "read", "before": "0001-01-01T00:00:00+14:00"}, {"before"}),
    ({"action": "read", "ids": ["x"], "device_id": "nope"}, {"device_id"}),
    ({"action": "read", "all": False}, {"all"}),
    ({"action": "read", "all": "maybe"}, {"all"}),
])
async def test_bulk_rejects_bad_input(node, body, fields) -> None:
    user = await new_user(node)
    assert_error(await bulk(user, **body), 400, fields=fields)


async def test_bulk_acts_only_on_the_callers_notifications(node) -> None:
    user, other = await new_user(node), await new_user(node)
    theirs = await other.post("theirs")
    mine = await user.post("mine")
    r = await bulk(user, action="read", ids=[theirs["id"], mine["id"]])
    assert r.body == {"updated": 1}
    r = await bulk(user, action="read", before=dt.datetime.now(dt.timezone.utc).isoformat())
    assert r.body == {"updated": 0}
    got = await other.call("GET", f"{API}/notifications/{theirs['id']}")
    assert got.body["is_read"] is False
    assert_error(await bulk(user, action="read", ids=["x"], device_id=str(uuid.uuid4())), 404, "device_not_found")
    assert_error(await user.call("POST", f"{API}/notifications/actions", raw=b"[1]"), 400)
    assert_error(await user.call("GET", f"{API}/notifications/actions"), 405)


async def test_an_automation_app_dismisses_by_its_own_source_key(node) -> None:
    """Tasker/MacroDroid keep no server ids: "notification cleared" -> dismiss by source_key, with the key."""
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    other_phone = await user.device("mobile")
    key = (await user.call("POST", f"{API}/devices/{phone}/api-keys", {"name": "MacroDroid"})).body["key"]
    body = {"app_name": "WhatsApp", "title": "Anna", "source_key": "com.whatsapp:Anna"}
    posted = (await call(node, "POST", f"{API}/notifications", body, token=key)).body
    same_key_elsewhere = await user.post("Anna", other_phone, app_name="WhatsApp", source_key="com.whatsapp:Anna")
    laptop_ws = await ws_connect(node, user.token, laptop)
    await laptop_ws.recv_type("new_notification")
    await laptop_ws.recv_type("new_notification")
    r = await call(node, "POST", f"{API}/notifications/actions",
                   {"action": "dismissed", "source_key": "com.whatsapp:Anna"}, token=key)
    assert r.status == 200 and r.body == {"updated": 1}, r.body
    sync = await laptop_ws.recv_type("notification_sync")
    assert (sync["data"]["notification_id"], sync["data"]["source_device"]) == (posted["id"], phone)
    got = await user.call("GET", f"{API}/notifications/{same_key_elsewhere['id']}")
    assert got.body["is_dismissed"] is False  # the other phone's notification with that key is its own
    assert_error(await bulk(user, action="read", source_key=""), 400, fields={"source_key"})
    laptop_ws.close()
