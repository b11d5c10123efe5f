"""SPEC "Updates and actions" against a real node: updates in place reach
every other device once per change, in stream order, also after being
offline; actions reach the source device live and after it reconnects;
every invalid invoke gets the SPEC status."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3

from store.sqlite_rows import encode_time
from tests.harness import new_user, ws_connect
from tests.test_rest_auth import API, assert_error

CHAT = {"app_name": "Signal", "title": "Ann", "body": "hi", "source_key": "org.signal|chat|7"}
ACTIONS = [{"id": "reply", "label": "Reply", "type": "reply"}, {"id": "mark", "label": "Mark read", "type": "button"}]


async def post(user, body, device):
    return await user.call("POST", f"{API}/notifications", body, headers={"X-Device-ID": device})


async def invoke(user, notification_id, body, device=None):
    headers = {"X-Device-ID": device} if device else None
    return await user.call("POST", f"{API}/notifications/{notification_id}/invoke", body, headers=headers)


async def test_update_in_place_once_per_change_in_order_also_offline(node):
    user = await new_user(node)
    phone, laptop, tablet = await user.device("mobile"), await user.device("desktop"), await user.device("web")
    phone_ws = await ws_connect(node, user.token, phone)
    laptop_ws = await ws_connect(node, user.token, laptop)
    first = await post(user, CHAT, phone)
    assert first.status == 201 and first.body["version"] == 1 and first.body["actions"] == []
    nid = first.body["id"]
    assert (await laptop_ws.recv_type("new_notification"))["data"]["id"] == nid
    # unchanged repeat: 200, the same record, nothing sent
    same = await post(user, CHAT, phone)
    assert same.status == 200 and same.body == first.body
    await laptop_ws.expect_silence(1.0)
    # read on the laptop, then the thread grows on the phone: same id, flags kept
    r = await user.call("PUT", f"{API}/notifications/{nid}/action", {"action": "read", "device_id": laptop})
    assert r.status == 200
    grown = await post(user, {**CHAT, "body": "hi\nare you there?"}, phone)
    assert grown.status == 200, grown.body
    assert grown.body["id"] == nid and grown.body["version"] == 2 and grown.body["is_read"] is True
    assert grown.body["body"] == "hi\nare you there?" and grown.body["created_at"] == first.body["created_at"]
    update = await laptop_ws.recv_type("notification_updated")
    # the whole notification, plus the per-device `silent` every delivered one carries
    assert update["data"] == {**grown.body, "silent": False}
    # a retry of the same update sends nothing again; a further change sends one more
    assert (await post(user, {**CHAT, "body": "hi\nare you there?"}, phone)).body == grown.body
    third = await post(user, {**CHAT, "body": "hi\nare you there?", "priority": 2, "actions": ACTIONS}, phone)
    assert third.status == 200 and third.body["version"] == 3 and third.body["actions"] == ACTIONS
    again = await laptop_ws.recv_type("notification_updated")
    assert again["data"] == {**third.body, "silent": False} and again["id"] != update["id"]
    await laptop_ws.expect_silence(1.0)
    assert (await user.call("GET", f"{API}/notifications/{nid}")).body == third.body
    # the tablet was offline the whole time: everything, in stream order, once
    tablet_ws = await ws_connect(node, user.token, tablet)
    frames = [await tablet_ws.recv() for _ in range(4)]
    assert [(f["type"], f["data"].get("version")) for f in frames] == [
        ("new_notification", 1), ("notification_sync", None), ("notification_updated", 2),
        ("notification_updated", 3)]
    await tablet_ws.expect_silence(1.0)
    # the phone caused every update and receives none of them (only the laptop's read)
    assert (await phone_ws.recv_type("notification_sync"))["data"]["is_read"] is True
    await phone_ws.expect_silence(0.5)
    for ws in (phone_ws, laptop_ws, tablet_ws):
        ws.close()


async def test_racing_retries_of_one_update_send_it_once(node):
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    laptop_ws = await ws_connect(node, user.token, laptop)
    await post(user, CHAT, phone)
    await laptop_ws.recv_type("new_notification")
    answers = await asyncio.gather(*(post(user, {**CHAT, "title": "Ann (2)"}, phone) for _ in range(6)))
    assert {r.status for r in answers} == {200}
    assert {r.body["version"] for r in answers} == {2}
    assert (await laptop_ws.recv_type("notification_updated"))["data"]["title"] == "Ann (2)"
    await laptop_ws.expect_silence(1.5)
    # two different updates racing: both apply, one after the other, each sent once
    await asyncio.gather(post(user, {**CHAT, "title": "A"}, phone), post(user, {**CHAT, "title": "B"}, phone))
    got = [await laptop_ws.recv_type("notification_updated") for _ in range(2)]
    assert [f["data"]["version"] for f in got] == [3, 4]
    await laptop_ws.expect_silence(1.0)
    laptop_ws.close()


async def test_update_over_the_phone_socket(node):
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    phone_ws, laptop_ws = await ws_connect(node, user.token, phone), await ws_connect(node, user.token, laptop)
    await phone_ws.send({"type": "new_notification", "id": "a", "data": CHAT})
    ack = await phone_ws.recv_type("ack")
    assert ack["data"]["created"] is True
    await phone_ws.send({"type": "new_notification", "id": "b", "data": {**CHAT, "title": "Ann ✓"}})
    ack2 = await phone_ws.recv_type("ack")
    assert ack2["data"]["created"] is False and ack2["data"]["notification"]["title"] == "Ann ✓"
    assert (await laptop_ws.recv_type("new_notification"))["data"]["version"] == 1
    assert (await laptop_ws.recv_type("notification_updated"))["data"]["title"] == "Ann ✓"
    phone_ws.close()
    laptop_ws.close()


async def test_actions_are_validated(node):
    user = await new_user(node)
    phone = await user.device("mobile")
    bad = [
        [{"id": str(i), "label": "x", "type": "button"} for i in range(4)],
        [{"id": "a", "label": "x"}, {"id": "a", "label": "y"}],
        [{"id": "a" * 65, "label": "x", "type": "button"}],
        [{"id": "a", "label": "x" * 65, "type": "button"}],
        [{"id": "a", "label": "x", "type": "swipe"}],
        [{"label": "x", "type": "button"}],
        ["a"],
        "reply",
    ]
    for actions in bad:
        assert_error(await post(user, {"app_name": "x", "actions": actions}, phone), 400, fields={"actions"})


async def test_action_invoked_reaches_the_phone_live_and_after_reconnect(node):
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    phone_ws = await ws_connect(node, user.token, phone)
    n = (await post(user, {**CHAT, "actions": ACTIONS}, phone)).body
    # REST, from the laptop: 202, and the phone's socket gets it
    r = await invoke(user, n["id"], {"action_id": "reply", "reply_text": "on my way"}, laptop)
    assert r.status == 202, r.body
    frame = await phone_ws.recv_type("action_invoked")
    assert frame["data"] == {"notification_id": n["id"], "action_id": "reply", "reply_text": "on my way",
                             "device_id": laptop}
    assert "id" in frame  # a stream message
    # the laptop's socket frame invoke_action: acked, and sent on
    laptop_ws = await ws_connect(node, user.token, laptop)
    await laptop_ws.send({"type": "invoke_action", "id": "i1", "data": {"notification_id": n["id"], "action_id": "mark"}})
    assert (await laptop_ws.recv_type("ack"))["data"]["id"] == "i1"
    live = await phone_ws.recv_type("action_invoked")
    assert live["data"] == {"notification_id": n["id"], "action_id": "mark", "device_id": laptop}
    # the phone goes offline; invokes queue on its stream and arrive after last_id
    phone_ws.close()
    await asyncio.sleep(0.3)
    for text in ("one", "two"):
        assert (await invoke(user, n["id"], {"action_id": "reply", "reply_text": text}, laptop)).status == 202
    back = await ws_connect(node, user.token, phone, last_id=live["id"])
    queued = [await back.recv_type("action_invoked") for _ in range(2)]
    assert [f["data"]["reply_text"] for f in queued] == ["one", "two"]
    await back.expect_silence(1.0)
    await laptop_ws.expect_silence(0.3)  # the invoker never receives its own invoke
    back.close()
    laptop_ws.close()


async def test_invalid_invokes_get_the_spec_status(node):
    user, other = await new_user(node), await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    n = (await post(user, {**CHAT, "actions": ACTIONS}, phone)).body
    nid = n["id"]
    assert_error(await invoke(user, nid, {"action_id": "nope"}, laptop), 404, "action_not_found")
    assert_error(await invoke(user, "6a1d3c1e-1111-4111-8111-111111111111", {"action_id": "reply"}, laptop), 404)
    assert_error(await invoke(other, nid, {"action_id": "reply"}), 404)
    assert_error(await invoke(user, nid, {"action_id": "mark", "reply_text": "x"}, laptop), 400, fields={"reply_text"})
    assert_error(await invoke(user, nid, {"action_id": "reply", "reply_text": "x" * 2001}, laptop), 400,
                 fields={"reply_text"})
    assert_error(await invoke(user, nid, {}, laptop), 400, fields={"action_id"})
    assert_error(await invoke(user, nid, {"action_id": 3}, laptop), 400, fields={"action_id"})
    assert_error(await invoke(user, nid, {"action_id": "reply"}, "6a1d3c1e-1111-4111-8111-111111111111"), 404)
    assert (await invoke(user, nid, {"action_id": "reply", "reply_text": "x" * 2000}, laptop)).status == 202
    r = await user.call("PUT", f"{API}/notifications/{nid}/action", {"action": "dismissed", "device_id": laptop})
    assert r.status == 200
    assert_error(await invoke(user, nid, {"action_id": "reply", "reply_text": "late"}, laptop), 409,
                 "notification_dismissed")
    # the socket frame answers the same errors as error frames, and stays open
    ws = await ws_connect(node, user.token, laptop)
    await ws.send({"type": "invoke_action", "id": "x", "data": {"notification_id": nid, "action_id": "reply"}})
    err = await ws.recv_type("error")
    assert err["data"]["code"] == "notification_dismissed" and err["data"]["id"] == "x"
    await ws.send({"type": "invoke_action", "id": "y", "data": {"notification_id": nid}})
    assert (await ws.recv_type("error"))["data"]["code"] == "validation_error"
    await ws.send({"type": "ping"})
    await ws.recv_type("pong")
    ws.close()


async def test_invoking_an_expired_notification_is_409_while_the_store_still_holds_it(node):
    """SPEC: "a dismissed or expired notification 409" (expired: gone from every other answer)."""
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    nid = (await post(user, {**CHAT, "source_key": "expiring", "actions": ACTIONS}, phone)).body["id"]
    # Seven days pass for this one row (the node's purge runs every 10 minutes, so it is still there).
    past = encode_time(dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
    db = sqlite3.connect(os.path.join(node.data_dir, "notisync.sqlite3"), timeout=10)
    with db:
        assert db.execute("UPDATE notifications SET expires_at = ? WHERE id = ?", (past, nid)).rowcount == 1
    db.close()
    assert_error(await user.call("GET", f"{API}/notifications/{nid}"), 404, "notification_not_found")
    assert_error(await invoke(user, nid, {"action_id": "reply", "reply_text": "late"}, laptop), 409,
                 "notification_expired")
    ws = await ws_connect(node, user.token, laptop)
    await ws.send({"type": "invoke_action", "id": "e", "data": {"notification_id": nid, "action_id": "mark"}})
    err = await ws.recv_type("error")
    assert err["data"]["code"] == "notification_expired" and err["data"]["id"] == "e"
    ws.close()
