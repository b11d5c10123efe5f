"""An update in place survives the node dying between its store write and its
fan-out (the same fault as tests/test_faults.py's first case): the sweeper,
or the phone's retry, sends ``notification_updated`` exactly once, in order."""
from __future__ import annotations

import asyncio
import time

from tests.harness import Node, new_user, ws_connect
from tests.test_faults import API, embedded_redis


async def test_update_pending_when_the_node_dies_is_sent_once_after_restart(nodes) -> None:
    node = Node().start()
    nodes.append(node)
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    chat = {"app_name": "Signal", "title": "Ann", "source_key": "chat-1"}

    async def post(body: str):
        return await user.call("POST", f"{API}/notifications", {**chat, "body": body},
                               headers={"X-Device-ID": phone})

    ws = await ws_connect(node, user.token, laptop)
    first = (await post("v1")).body
    last = (await ws.recv_type("new_notification"))["id"]
    ws.close()

    # Redis holds every write: the update commits to the store, then waits on its fan-out.
    embedded_redis(node).execute_command("CLIENT", "PAUSE", "5000", "WRITE")
    update = asyncio.ensure_future(post("v2"))
    deadline = time.monotonic() + 10
    while (await user.call("GET", f"{API}/notifications/{first['id']}")).body["version"] != 2:
        assert time.monotonic() < deadline, "the update was never stored"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    node.kill()
    await asyncio.gather(update, return_exceptions=True)
    embedded_redis(node).execute_command("CLIENT", "UNPAUSE")
    node.start()

    # The phone retries the same update while the sweeper may be finishing it: one frame either way.
    r = await post("v2")
    assert r.status == 200 and r.body["version"] == 2 and r.body["id"] == first["id"], r.body
    ws = await ws_connect(node, user.token, laptop, last_id=last)
    frame = await ws.recv_type("notification_updated", timeout=30)
    assert frame["data"]["body"] == "v2" and frame["data"]["version"] == 2
    # a later update comes after it, once
    assert (await post("v3")).body["version"] == 3
    later = await ws.recv_type("notification_updated", timeout=30)
    assert later["data"]["version"] == 3
    await ws.expect_silence(3.0)
    ws.close()
