"""Store contract for updates in place (SPEC "Updates and actions"): every
backend of tests/test_store_contract.py replaces content atomically at a
version, and clears ``pending`` only at the version that was fanned out."""
from __future__ import annotations

import asyncio

from store.documents import DocumentStore, utcnow
from tests.test_store_contract import MS, add_user, note

ACTIONS = [{"id": "reply", "label": "Reply", "type": "reply"}, {"id": "ok", "label": "OK", "type": "button"}]


async def test_update_content_at_version_keeps_flags(store: DocumentStore) -> None:
    user = await add_user(store)
    n, _ = await store.create_notification(note(user["id"], actions=ACTIONS, version=1))
    assert n["actions"] == ACTIONS and n["version"] == 1
    assert (await store.get_notification(user["id"], n["id"]))["actions"] == ACTIONS
    await store.set_notification_flags(user["id"], n["id"], {"is_read": True}, utcnow())
    t1 = utcnow() + MS
    after = await store.update_notification_content(
        user["id"], n["id"], 1, {"title": "New", "body": "Text", "actions": ACTIONS[:1]}, t1
    )
    assert after is not None
    assert (after["title"], after["body"], after["actions"], after["version"]) == ("New", "Text", ACTIONS[:1], 2)
    assert after["is_read"] is True and after["is_dismissed"] is False  # flags kept
    assert after["pending"] is True and after["updated_at"] == t1 and after["created_at"] == n["created_at"]
    assert await store.get_notification(user["id"], n["id"]) == after
    # a stale version, another user's id, or an unknown field: nothing changes
    assert await store.update_notification_content(user["id"], n["id"], 1, {"title": "Lost"}, utcnow()) is None
    other = await add_user(store)
    assert await store.update_notification_content(other["id"], n["id"], 2, {"title": "X"}, utcnow()) is None
    assert (await store.get_notification(user["id"], n["id"]))["title"] == "New"


async def test_record_without_version_is_at_version_one(store: DocumentStore) -> None:
    user = await add_user(store)
    n, _ = await store.create_notification(note(user["id"]))  # written before updates existed
    assert "version" not in n and "actions" not in (await store.get_notification(user["id"], n["id"]))
    after = await store.update_notification_content(user["id"], n["id"], 1, {"priority": 2}, utcnow())
    assert after is not None and after["priority"] == 2 and after["version"] == 2


async def test_racing_updates_apply_one_at_a_time(store: DocumentStore) -> None:
    user = await add_user(store)
    n, _ = await store.create_notification(note(user["id"], version=1))
    results = await asyncio.gather(*(
        store.update_notification_content(user["id"], n["id"], 1, {"title": f"T{i}"}, utcnow()) for i in range(8)
    ))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await store.get_notification(user["id"], n["id"]) == winners[0]


async def test_clear_pending_at_only_clears_that_version(store: DocumentStore) -> None:
    user = await add_user(store)
    n, _ = await store.create_notification(note(user["id"], version=1, pending=True))
    await store.update_notification_content(user["id"], n["id"], 1, {"title": "v2"}, utcnow())
    await store.clear_pending_at([(n["id"], 1)])  # the late clear of version 1's fan-out
    assert (await store.get_notification(user["id"], n["id"]))["pending"] is True
    assert [r["id"] for r in await store.list_pending(utcnow() + MS, 10)] == [n["id"]]
    await store.clear_pending_at([(n["id"], 2)])
    assert (await store.get_notification(user["id"], n["id"]))["pending"] is False
    legacy, _ = await store.create_notification(note(user["id"], pending=True))  # no version: 1
    await store.clear_pending_at([(legacy["id"], 1)])
    assert (await store.get_notification(user["id"], legacy["id"]))["pending"] is False
