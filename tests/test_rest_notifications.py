"""/notifications over REST against a real node: post, dedupe, read back,
page, filter, act — and never another user's notifications."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest

from tests.harness import new_user
from tests.test_rest_auth import API, assert_error, parse_iso

NOTIFICATION_KEYS = {"id", "app_name", "title", "body", "category", "priority", "is_read", "is_dismissed",
                     "source_device_id", "created_at", "expires_at"}


async def post(user, body: dict[str, Any], device: str | None = None):
    headers = {"X-Device-ID": device} if device else None
    return await user.call("POST", f"{API}/notifications", body, headers=headers)


async def listing(user, query: str = "") -> list[dict[str, Any]]:
    r = await user.call("GET", f"{API}/notifications{query}")
    assert r.status == 200, r.body
    assert set(r.body) == {"notifications", "next_cursor"}
    return r.body["notifications"]


async def act(user, notification_id: str, action: str, **extra: Any):
    return await user.call("PUT", f"{API}/notifications/{notification_id}/action", {"action": action, **extra})


async def test_create_returns_every_field(node):
    user = await new_user(node)
    before = dt.datetime.now(dt.timezone.utc)
    r = await post(user, {"app_name": "Slack", "title": "Standup", "body": "in 5 minutes", "priority": 2})
    assert r.status == 201, r.body
    n = r.body
    assert NOTIFICATION_KEYS <= set(n), set(n)
    assert str(uuid.UUID(n["id"])) == n["id"]
    assert (n["app_name"], n["title"], n["body"], n["priority"]) == ("Slack", "Standup", "in 5 minutes", 2)
    assert n["category"] == "Work"  # none given: the built-in table files Slack under Work
    assert (n["is_read"], n["is_dismissed"], n["source_device_id"]) == (False, False, None)
    created, expires = parse_iso(n["created_at"]), parse_iso(n["expires_at"])
    assert abs(created - before) < dt.timedelta(seconds=5)
    assert expires - created == dt.timedelta(days=7)
    # optional text defaults to empty, priority to 0
    r = await post(user, {"app_name": "Mail", "category": "Work"})
    assert r.status == 201 and (r.body["title"], r.body["body"], r.body["priority"], r.body["category"]) == ("", "", 0, "Work")
    got = await user.call("GET", f"{API}/notifications/{n['id']}")
    assert got.status == 200 and got.body == n


@pytest.mark.parametrize("body, fields", [
    ({"app_name": "x", "category": "Spam"}, {"category"}),
    ({"app_name": "x", "category": "work"}, {"category"}),
    ({"app_name": "x", "priority": "high"}, {"priority"}),
    ({"app_name": "x", "priority": 1.5}, {"priority"}),
    ({"app_name": "x", "priority": 99}, {"priority"}),
    ({"app_name": "x", "category": "Nope", "priority": "urgent"}, {"category", "priority"}),
    ({"title": "no app"}, {"app_name"}),
    ({"app_name": ""}, {"app_name"}),
    ({"app_name": "x", "title": 5}, {"title"}),
    ({"app_name": "x", "source_device_id": "not-a-uuid"}, {"source_device_id"}),
    ({"app_name": "x", "source_key": ""}, {"source_key"}),
    ({"app_name": "x", "body": "b" * 16001}, {"body"}),
])
async def test_create_rejects_bad_fields(node, body, fields):
    user = await new_user(node)
    assert_error(await post(user, body), 400, fields=fields)
    assert await listing(user) == []


async def test_source_device_from_header_or_body(node):
    user = await new_user(node)
    phone, tablet = await user.device("mobile"), await user.device("web")
    by_header = await post(user, {"app_name": "A"}, device=phone)
    assert by_header.status == 201 and by_header.body["source_device_id"] == phone
    by_body = await post(user, {"app_name": "B", "source_device_id": tablet})
    assert by_body.status == 201 and by_body.body["source_device_id"] == tablet
    stored = {n["app_name"]: n["source_device_id"] for n in await listing(user)}
    assert stored == {"A": phone, "B": tablet}


async def test_unknown_or_foreign_source_device_is_404(node):
    user, other = await new_user(node), await new_user(node)
    foreign = await other.device("mobile")
    for device in (str(uuid.uuid4()), foreign):
        assert_error(await post(user, {"app_name": "x"}, device=device), 404)
        assert_error(await post(user, {"app_name": "x", "source_device_id": device}), 404)
    assert await listing(user) == [] and await listing(other) == []


async def test_source_key_dedupes_per_device(node):
    user = await new_user(node)
    phone, tablet = await user.device("mobile"), await user.device("web")
    body = {"app_name": "WhatsApp", "title": "Hi", "source_key": "com.whatsapp|chat|42"}
    first = await post(user, body, device=phone)
    assert first.status == 201
    # the phone retries: same record back, 200, nothing new
    again = await post(user, body, device=phone)
    assert again.status == 200, again.body
    assert again.body == first.body
    # with edited text it is the same notification, updated in place (tests/test_updates_actions.py)
    edited = await post(user, {**body, "title": "Hi (edited)"}, device=phone)
    assert edited.status == 200 and edited.body["id"] == first.body["id"] and edited.body["title"] == "Hi (edited)"
    by_body = await post(user, {**body, "source_device_id": phone})
    assert by_body.status == 200 and by_body.body["id"] == first.body["id"]
    assert [n["id"] for n in await listing(user)] == [first.body["id"]]
    # the same key from another device, or without a device, is a different notification
    other = await post(user, body, device=tablet)
    assert other.status == 201 and other.body["id"] != first.body["id"]
    no_device = await post(user, body)
    assert no_device.status == 201
    assert len({n["id"] for n in await listing(user)}) == 3
    # without a source_key nothing is ever deduplicated
    plain = [await post(user, {"app_name": "Plain"}, device=phone) for _ in range(2)]
    assert [r.status for r in plain] == [201, 201] and plain[0].body["id"] != plain[1].body["id"]


async def test_get_by_id_is_private(node):
    user, other = await new_user(node), await new_user(node)
    n = await user.post("mine")
    assert (await user.call("GET", f"{API}/notifications/{n['id']}")).body == n
    theirs = await other.call("GET", f"{API}/notifications/{n['id']}")
    missing = await other.call("GET", f"{API}/notifications/{uuid.uuid4()}")
    assert_error(theirs, 404)
    assert theirs.body == missing.body
    assert_error(await user.call("GET", f"{API}/notifications/not-a-uuid"), 404)
    assert await listing(other) == []
    # acting on it is refused the same way, and changes nothing
    assert_error(await act(other, n["id"], "read"), 404)
    assert (await user.call("GET", f"{API}/notifications/{n['id']}")).body["is_read"] is False


async def test_list_is_newest_first(node):
    user = await new_user(node)
    titles = []
    for i in range(4):
        titles.append((await user.post(f"n{i}"))["title"])
        await asyncio.sleep(0.005)  # distinct milliseconds, so "newest" is unambiguous
    assert [n["title"] for n in await listing(user)] == titles[::-1]


async def test_pages_with_next_cursor_visit_each_once_in_order(node):
    user = await new_user(node)
    posted = [(await user.post(f"#{i}"))["id"] for i in range(25)]
    everything = await listing(user, "?limit=200")
    assert sorted(n["id"] for n in everything) == sorted(posted)
    stamps = [(parse_iso(n["created_at"]), n["id"]) for n in everything]
    assert stamps == sorted(stamps, reverse=True)
    seen, cursor, sizes = [], None, []
    while True:
        query = "?limit=10" + (f"&before={cursor}" if cursor else "")
        r = await user.call("GET", f"{API}/notifications{query}")
        assert r.status == 200, r.body
        sizes.append(len(r.body["notifications"]))
        seen += [n["id"] for n in r.body["notifications"]]
        cursor = r.body["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor
        assert len(sizes) < 10, "pagination does not end"
    assert sizes == [10, 10, 5]
    assert seen == [n["id"] for n in everything]
    # a page that ends exactly at the last item says there is nothing more
    r = await user.call("GET", f"{API}/notifications?limit=25")
    assert len(r.body["notifications"]) == 25 and r.body["next_cursor"] is None
    # default page size is at least what we posted here
    assert len(await listing(user)) == 25


async def test_filters(node):
    user = await new_user(node)
    a = await user.post("Deploy finished", app_name="GitHub", category="Work", body="all green")
    b = await user.post("Lunch?", app_name="Signal", category="Personal", body="Pizza at noon")
    c = await user.post("50% OFF", app_name="ShopApp", category="Junk", body="today only")
    d = await user.post("Review requested", app_name="GitHub", category="Work", body="PR #12")
    assert (await act(user, a["id"], "read")).status == 200
    assert (await act(user, b["id"], "dismissed")).status == 200

    async def ids(query: str) -> set[str]:
        return {n["id"] for n in await listing(user, query)}

    assert await ids("?app_name=GitHub") == {a["id"], d["id"]}
    assert await ids("?app_name=github") == set()  # app_name is an exact match
    assert await ids("?category=Junk") == {c["id"]}
    assert await ids("?category=Work") == {a["id"], d["id"]}
    assert await ids("?is_read=true") == {a["id"]}
    assert await ids("?is_read=false") == {b["id"], c["id"], d["id"]}
    assert await ids("?is_dismissed=true") == {b["id"]}
    assert await ids("?is_dismissed=false&is_read=false") == {c["id"], d["id"]}
    assert await ids("?app_name=GitHub&is_read=false") == {d["id"]}
    # q: case-insensitive substring of title, body or app name; wildcards are literal
    assert await ids("?q=deploy") == {a["id"]}  # title
    assert await ids("?q=PIZZA") == {b["id"]}  # body
    assert await ids("?q=shopapp") == {c["id"]}  # app name
    assert await ids("?q=github") == {a["id"], d["id"]}
    assert await ids("?q=50%25") == {c["id"]}
    assert await ids("?q=%25") == {c["id"]}
    assert await ids("?q=_") == set()
    assert await ids("?q=nothing-like-this") == set()
    assert await ids("?q=review&category=Junk") == set()


@pytest.mark.parametrize("query, field", [
    ("limit=201", "limit"), ("limit=0", "limit"), ("limit=abc", "limit"), ("is_read=maybe", "is_read"),
    ("is_dismissed=perhaps", "is_dismissed"), ("category=Spam", "category"), ("before=garbage", "before"),
])
async def test_bad_list_parameters_are_400(node, query, field):
    user = await new_user(node)
    err = assert_error(await user.call("GET", f"{API}/notifications?{query}"), 400)
    assert field in err.get("fields", {}), err
    assert (await user.call("GET", f"{API}/notifications?limit=200")).status == 200


async def test_actions_only_ever_set_flags(node):
    user = await new_user(node)
    n = (await user.post("flags"))["id"]

    async def flags() -> tuple[bool, bool]:
        got = (await user.call("GET", f"{API}/notifications/{n}")).body
        return got["is_read"], got["is_dismissed"]

    r = await act(user, n, "read")
    assert r.status == 200 and (r.body["is_read"], r.body["is_dismissed"]) == (True, False)
    assert r.body["id"] == n and NOTIFICATION_KEYS <= set(r.body)
    r = await act(user, n, "dismissed")
    assert r.status == 200 and (r.body["is_read"], r.body["is_dismissed"]) == (True, True)
    for action in ("read", "clicked", "dismissed"):  # repeats change nothing and never unset
        r = await act(user, n, action)
        assert r.status == 200 and (r.body["is_read"], r.body["is_dismissed"]) == (True, True)
    assert await flags() == (True, True)

    m = (await user.post("dismiss first"))["id"]
    r = await act(user, m, "dismissed")
    assert (r.body["is_read"], r.body["is_dismissed"]) == (False, True)  # dismissing is not reading
    r = await act(user, m, "read")
    assert (r.body["is_read"], r.body["is_dismissed"]) == (True, True)  # reading does not undismiss

    k = (await user.post("click me"))["id"]
    r = await act(user, k, "clicked")
    assert r.status == 200 and (r.body["is_read"], r.body["is_dismissed"]) == (True, False)


async def test_action_with_acting_device(node):
    user, other = await new_user(node), await new_user(node)
    laptop = await user.device("desktop")
    n = (await user.post("x"))["id"]
    r = await act(user, n, "read", device_id=laptop)
    assert r.status == 200 and r.body["is_read"] is True
    r = await user.call("PUT", f"{API}/notifications/{n}/action", {"action": "dismissed"}, headers={"X-Device-ID": laptop})
    assert r.status == 200 and r.body["is_dismissed"] is True
    # acting "as" a device that is not the caller's is refused
    m = (await user.post("y"))["id"]
    assert_error(await act(user, m, "read", device_id=await other.device()), 404)
    assert_error(await act(user, m, "read", device_id=str(uuid.uuid4())), 404)
    assert (await user.call("GET", f"{API}/notifications/{m}")).body["is_read"] is False


async def test_bad_action_or_unknown_notification(node):
    user = await new_user(node)
    n = (await user.post("x"))["id"]
    for body in ({"action": "delete"}, {"action": "READ"}, {"action": None}, {}, {"action": ["read"]}):
        assert_error(await user.call("PUT", f"{API}/notifications/{n}/action", body), 400, fields={"action"})
    assert_error(await user.call("PUT", f"{API}/notifications/{n}/action", raw=b"[]"), 400)
    assert_error(await act(user, str(uuid.uuid4()), "read"), 404)
    assert_error(await act(user, "not-a-uuid", "read"), 404)
    got = (await user.call("GET", f"{API}/notifications/{n}")).body
    assert (got["is_read"], got["is_dismissed"]) == (False, False)
