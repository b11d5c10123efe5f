"""Rules on a real server: CRUD and validation, each action over REST and /ws, routing that
leaves nothing in excluded devices' streams (also for a device catching up), the dry run,
the built-in categories, and a rule change reaching another node's cache."""
from __future__ import annotations

import asyncio
import shutil
from typing import Any

from tests.harness import WS, Node, User, new_user, short_tmpdir, ws_connect

API = "/api/v1"


async def add_rule(user: User, match: dict[str, Any], action: dict[str, Any], **extra: Any) -> dict[str, Any]:
    r = await user.call("POST", f"{API}/rules", {"name": "r", "match": match, "action": action, **extra})
    assert r.status == 201, r.body
    return r.body


async def titles_until(ws: WS, last: str, timeout: float = 10) -> list[dict[str, Any]]:
    """new_notification payloads the socket gets, up to and including the one titled ``last``."""
    got = []
    while True:
        frame = await ws.recv_type("new_notification", timeout)
        got.append(frame["data"])
        if frame["data"]["title"] == last:
            return got


async def test_crud_validation_and_limit(node: Node) -> None:
    user, other = await new_user(node), await new_user(node)
    a = await add_rule(user, {"app_name": "Slack*"}, {"silent": True})
    b = await add_rule(user, {"title_contains": "x"}, {"priority": 3}, position=-1)
    assert a["position"] == 0 and a["enabled"] is True and a["match"] == {"app_name": "Slack*"}
    listed = (await user.call("GET", f"{API}/rules")).body["rules"]
    assert [r["id"] for r in listed] == [b["id"], a["id"]]
    r = await user.call("PUT", f"{API}/rules/{a['id']}", {"enabled": False, "position": -5})
    assert r.status == 200 and r.body["enabled"] is False and r.body["position"] == -5
    assert (await other.call("PUT", f"{API}/rules/{a['id']}", {"enabled": True})).status == 404
    assert (await other.call("DELETE", f"{API}/rules/{a['id']}")).status == 404
    assert (await other.call("GET", f"{API}/rules")).body["rules"] == []
    # Every bad field is named.
    r = await user.call("POST", f"{API}/rules", {"match": {"app_name": "x" * 201, "category": "Spam"},
                                                 "action": {"only_device_types": ["tv"], "priority": 9}})
    assert r.status == 400 and r.body["error"]["code"] == "validation_error"
    assert set(r.body["error"]["fields"]) == {"match.app_name", "match.category", "action.only_device_types.0",
                                              "action.priority"}
    r = await user.call("POST", f"{API}/rules", {"match": {}, "action": {}})
    assert r.status == 400 and "action._schema" in r.body["error"]["fields"]
    r = await user.call("POST", f"{API}/rules", [1])
    assert r.status == 400
    assert (await user.call("PUT", f"{API}/rules/{a['id']}", {})).status == 400
    assert (await user.call("DELETE", f"{API}/rules/{a['id']}")).status == 204
    assert (await user.call("DELETE", f"{API}/rules/{a['id']}")).status == 404
    # At most 100 per user.
    for i in range(99):
        await add_rule(user, {"app_name": f"app{i}"}, {"silent": True})
    r = await user.call("POST", f"{API}/rules", {"match": {}, "action": {"silent": True}})
    assert r.status == 409 and r.body["error"]["code"] == "too_many_rules"


async def test_each_action_over_rest_and_socket(node: Node) -> None:
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    await add_rule(user, {"app_name": "bank*", "title_contains": "PAYMENT"}, {"category": "Work", "priority": 4})
    await add_rule(user, {"body_contains": "shh"}, {"silent": True})
    drop = await add_rule(user, {"app_name": "*promo*"}, {"drop": True})
    ws_laptop = await ws_connect(node, user.token, laptop)
    ws_phone = await ws_connect(node, user.token, phone)
    await ws_phone.send({"type": "ping"})
    await ws_phone.recv_type("pong")
    for via in ("rest", "ws"):
        async def post(**fields: Any) -> Any:
            if via == "rest":
                r = await user.call("POST", f"{API}/notifications", fields, headers={"X-Device-ID": phone})
                return r.status, r.body
            await ws_phone.send({"type": "new_notification", "id": "p", "data": fields})
            return None, (await ws_phone.recv_type("ack"))["data"]

        status, body = await post(app_name="BankApp", title="Card payment", body="12 EUR")
        got = await ws_laptop.recv_type("new_notification")
        assert (got["data"]["category"], got["data"]["priority"], got["data"]["silent"]) == ("Work", 4, False)
        status, body = await post(app_name="Mail", title="t", body="shh quiet")
        got = await ws_laptop.recv_type("new_notification")
        assert got["data"]["silent"] is True
        status, body = await post(app_name="MyPromoApp", title="SALE")
        if via == "rest":
            assert status == 202 and body == {"dropped": True, "rule_id": drop["id"]}
        else:
            assert body["dropped"] is True and body["rule_id"] == drop["id"] and "notification_id" not in body
        await post(app_name="Mail", title=f"after-{via}")
        got = await ws_laptop.recv_type("new_notification")
        assert got["data"]["title"] == f"after-{via}"  # the dropped one never came
    listed = (await user.call("GET", f"{API}/notifications?limit=50")).body["notifications"]
    assert not [n for n in listed if n["app_name"] == "MyPromoApp"]  # nothing stored
    ws_laptop.close()
    ws_phone.close()


async def test_routing_leaves_nothing_in_excluded_streams_even_for_a_device_catching_up(node: Node) -> None:
    user = await new_user(node)
    phone, laptop, tablet, browser = (await user.device("mobile"), await user.device("desktop"),
                                      await user.device("mobile"), await user.device("web"))
    await add_rule(user, {"app_name": "Pager"}, {"only_device_types": ["mobile"]})
    await add_rule(user, {"app_name": "Chat"}, {"skip_device_ids": [laptop]})
    ws_browser = await ws_connect(node, user.token, browser)  # online; laptop and tablet offline
    for title, app in (("p1", "Pager"), ("c1", "Chat"), ("m1", "Mail")):
        await user.post(title, device=phone, app_name=app)
    assert [n["title"] for n in await titles_until(ws_browser, "m1")] == ["c1", "m1"]
    ws_laptop = await ws_connect(node, user.token, laptop)  # catches up from its stream
    assert [n["title"] for n in await titles_until(ws_laptop, "m1")] == ["m1"]
    ws_tablet = await ws_connect(node, user.token, tablet)
    assert [n["title"] for n in await titles_until(ws_tablet, "m1")] == ["p1", "c1", "m1"]
    for ws in (ws_browser, ws_laptop, ws_tablet):
        ws.close()


async def test_dry_run_and_builtin_categories(node: Node) -> None:
    user = await new_user(node)
    phone, laptop, browser = await user.device("mobile"), await user.device("desktop"), await user.device("web")
    a = await add_rule(user, {"app_name": "slack"}, {"only_device_types": ["desktop", "mobile"]})
    b = await add_rule(user, {"category": "Work"}, {"silent": True, "priority": 1})
    await add_rule(user, {"app_name": "never"}, {"drop": True})
    r = await user.call("POST", f"{API}/rules/test", {"app_name": "Slack", "title": "hi"},
                        headers={"X-Device-ID": phone})
    assert r.status == 200, r.body
    assert r.body == {"matched": [a["id"], b["id"]], "result": {
        "category": "Work", "priority": 1, "silent": True, "dropped": False, "device_ids": [laptop]}}
    r = await user.call("POST", f"{API}/rules/test", {"app_name": "Never"})
    assert r.body["result"]["dropped"] is True and r.body["result"]["device_ids"] == []
    assert (await user.call("POST", f"{API}/rules/test", {"title": "no app"})).status == 400
    assert (await user.call("GET", f"{API}/notifications")).body["notifications"] == []  # nothing stored
    # Built-in table when neither the phone nor a rule says; the phone's own category wins.
    other = await new_user(node)
    assert (await other.post(app_name="com.whatsapp"))["category"] == "Personal"
    assert (await other.post(app_name="Temu"))["category"] == "Junk"
    assert (await other.post(app_name="Microsoft Teams"))["category"] == "Work"
    assert (await other.post(app_name="Microsoft Teams", category="Junk"))["category"] == "Junk"
    assert (await other.post(app_name="Some Unknown App"))["category"] == "Personal"
    del browser


async def test_a_rule_change_reaches_another_nodes_cache_within_a_second(redis_server) -> None:
    data_dir = short_tmpdir()
    a, b = (Node(data_dir=data_dir, redis_url=redis_server.url).start() for _ in range(2))
    try:
        user = await new_user(a)
        on_b = User(b, user.email, user.password, user.id, user.token, user.refresh_token)
        assert (await on_b.post(app_name="Mail", title="warm the cache"))["priority"] == 0
        rule = await add_rule(user, {"app_name": "Mail"}, {"priority": 5})
        loop = asyncio.get_running_loop()
        start = loop.time()
        while (await on_b.post(app_name="Mail"))["priority"] != 5:
            assert loop.time() - start < 10, "node b kept its stale rules"
            await asyncio.sleep(0.1)
        assert (await user.call("DELETE", f"{API}/rules/{rule['id']}")).status == 204
        while (await on_b.post(app_name="Mail"))["priority"] != 0:
            assert loop.time() - start < 20, "node b kept a deleted rule"
            await asyncio.sleep(0.1)
    finally:
        for n in (a, b):
            assert n.stop() == 0, n.log()
        shutil.rmtree(data_dir, ignore_errors=True)

