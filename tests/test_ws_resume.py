"""SPEC's offline catch-up over /ws, against a real node on embedded defaults: a device
that was away gets what it missed, in order, before anything live; ``last_id`` resumes;
an unknown one, or more than a stream keeps, gets ``sync_required``."""
from __future__ import annotations

import asyncio

from tests.harness import new_user, ws_connect


async def test_offline_device_gets_everything_in_order_before_live(node):
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    first = await ws_connect(node, user.token, laptop)
    await user.post("warm-up", device=phone)
    await first.recv_type("new_notification")
    first.close()
    await asyncio.sleep(0.3)
    posted = [await user.post(f"missed {i}", device=phone) for i in range(5)]
    await user.call("PUT", f"/api/v1/notifications/{posted[2]['id']}/action", {"action": "read", "device_id": phone})
    ws = await ws_connect(node, user.token, laptop)
    live = asyncio.ensure_future(user.post("live one", device=phone))
    frames = [await ws.recv() for _ in range(7)]
    await live
    kinds = [(f["type"], f["data"].get("title") or f["data"].get("notification_id")) for f in frames]
    assert kinds == [("new_notification", f"missed {i}") for i in range(5)] + [
        ("notification_sync", posted[2]["id"]), ("new_notification", "live one")]
    ids = [f["id"] for f in frames]
    assert len(set(ids)) == 7
    ws.close()


async def test_resume_with_last_id(node):
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    for i in range(6):
        await user.post(f"n{i}", device=phone)
    ws = await ws_connect(node, user.token, laptop)
    frames = [await ws.recv_type("new_notification") for _ in range(6)]
    ws.close()
    # resume after the third: exactly the last three come again, in order
    ws = await ws_connect(node, user.token, laptop, last_id=frames[2]["id"])
    again = [await ws.recv_type("new_notification") for _ in range(3)]
    assert [f["data"]["title"] for f in again] == ["n3", "n4", "n5"]
    assert [f["id"] for f in again] == [f["id"] for f in frames[3:]]
    await ws.expect_silence()
    ws.close()


async def test_reconnect_without_last_id_resumes_where_delivery_stopped(node):
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    ws = await ws_connect(node, user.token, laptop)
    await user.post("a", device=phone)
    await ws.recv_type("new_notification")
    ws.close()
    await asyncio.sleep(0.5)
    await user.post("b", device=phone)
    ws = await ws_connect(node, user.token, laptop)
    frame = await ws.recv_type("new_notification")
    assert frame["data"]["title"] == "b"
    await ws.expect_silence()
    ws.close()


async def test_unknown_last_id_gets_sync_required(node):
    user = await new_user(node)
    laptop = await user.device("desktop")
    ws = await ws_connect(node, user.token, laptop, last_id="garbage")
    assert (await ws.recv_type("sync_required"))["data"]["reason"]
    ws.close()


async def test_offline_past_1000_gets_newest_1000_and_sync_required(node):
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    for i in range(1030):
        await user.post(f"#{i}", device=phone, app_name="Bulk")
    ws = await ws_connect(node, user.token, laptop)
    first = await ws.recv(10)
    assert first["type"] == "sync_required"
    titles = [(await ws.recv_type("new_notification", 10))["data"]["title"] for _ in range(1000)]
    assert titles == [f"#{i}" for i in range(30, 1030)]
    await ws.expect_silence()
    ws.close()
