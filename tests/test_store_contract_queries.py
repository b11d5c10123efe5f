"""The store contract, continued: listing and searching notifications, flags,
expiry and purge, device API keys and counts, on the backends of
tests/test_store_contract.py (its ``store`` fixture)."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from store.documents import DocumentStore, NotificationQuery, Record, utcnow
from store.errors import DuplicateKey
from tests.test_store_contract import MS, DAY, add_user, list_ids, new_id, newest_first, note, virtual_now


async def test_pending_notifications_are_listed_oldest_first_until_cleared(store: DocumentStore) -> None:
    base = utcnow() - dt.timedelta(minutes=5)
    old = [note(f"u{i % 2}", pending=True, created_at=base + dt.timedelta(seconds=i)) for i in range(4)]
    done = note("u0", created_at=base)
    fresh = note("u1", pending=True)  # younger than the cut-off below
    for n in [*reversed(old), done, fresh]:
        await store.create_notification(n)
    cutoff = utcnow() - dt.timedelta(minutes=1)
    assert [r["id"] for r in await store.list_pending(cutoff, 10)] == [n["id"] for n in old]
    assert [r["id"] for r in await store.list_pending(cutoff, 2)] == [n["id"] for n in old[:2]]
    got = await store.list_pending(cutoff, 1)
    assert got[0]["pending"] is True and got[0] == old[0]
    await store.clear_pending([old[0]["id"], old[2]["id"], new_id()])
    assert [r["id"] for r in await store.list_pending(cutoff, 10)] == [old[1]["id"], old[3]["id"]]
    assert (await store.get_notification("u0", old[0]["id"]))["pending"] is False
    await store.clear_pending([])
    assert [r["id"] for r in await store.list_pending(utcnow() + dt.timedelta(seconds=1), 10)] == [
        old[1]["id"], old[3]["id"], fresh["id"]]


async def test_list_newest_first_ties_broken_by_id(store: DocumentStore) -> None:
    base = utcnow()
    notes = [note("u1", created_at=base + (i % 2) * MS) for i in range(6)]
    for n in notes:
        await store.create_notification(n)
    await store.create_notification(note("u2"))
    assert await list_ids(store, "u1") == newest_first(notes)
    assert await list_ids(store, "u1", limit=2) == newest_first(notes)[:2]


async def test_pages_with_before_visit_each_item_once(store: DocumentStore) -> None:
    base = utcnow()
    notes = [note("u1", created_at=base + (i // 3) * MS) for i in range(25)]
    for n in reversed(notes):
        await store.create_notification(n)
    seen: list[str] = []
    sizes: list[int] = []
    before = None
    for _ in range(5):  # bounded: a cursor that repeats must fail, not hang
        page = await store.list_notifications(NotificationQuery(user_id="u1", limit=10, before=before))
        if not page:
            break
        sizes.append(len(page))
        seen += [r["id"] for r in page]
        before = (page[-1]["created_at"], page[-1]["id"])
    assert sizes == [10, 10, 5]
    assert seen == newest_first(notes)


async def test_list_filters(store: DocumentStore) -> None:
    mail = note("u1")
    chat = note("u1", app_name="Chat", category="Work", is_read=True)
    gone = note("u1", app_name="Chat", is_dismissed=True)
    for n in (mail, chat, gone):
        await store.create_notification(n)
    assert await list_ids(store, "u1", app_name="Chat") == newest_first([chat, gone])
    assert await list_ids(store, "u1", category="Work") == [chat["id"]]
    assert await list_ids(store, "u1", is_read=True) == [chat["id"]]
    assert await list_ids(store, "u1", is_read=False) == newest_first([mail, gone])
    assert await list_ids(store, "u1", is_dismissed=True) == [gone["id"]]
    assert await list_ids(store, "u1", app_name="Chat", is_dismissed=False) == [chat["id"]]


async def test_q_is_a_case_insensitive_literal_substring(store: DocumentStore) -> None:
    by_title = note("u1", title="Invoice 50% OFF")
    by_body = note("u1", body="a_b and c\\d (x.y)")
    by_app = note("u1", app_name="WhatsApp")
    plain = note("u1", title="500 items", body="aXb cd xzy")
    accent = note("u1", title="École")
    for n in (by_title, by_body, by_app, plain, accent):
        await store.create_notification(n)
    assert await list_ids(store, "u1", q="50%") == [by_title["id"]]
    assert await list_ids(store, "u1", q="invoice") == [by_title["id"]]
    assert await list_ids(store, "u1", q="A_B") == [by_body["id"]]
    assert await list_ids(store, "u1", q="c\\d") == [by_body["id"]]
    assert await list_ids(store, "u1", q="(x.y)") == [by_body["id"]]
    assert await list_ids(store, "u1", q="whatsAPP") == [by_app["id"]]
    assert await list_ids(store, "u1", q="école") == [accent["id"]]
    assert await list_ids(store, "u2", q="50%") == []


# -- notifications: flags and expiry -----------------------------------------------
async def test_set_flags_only_turns_them_on(store: DocumentStore) -> None:
    n = note("u1")
    await store.create_notification(n)
    t1 = utcnow() + MS
    assert await store.set_notification_flags("u1", n["id"], {"is_read": True}, t1) == {
        **n, "is_read": True, "updated_at": t1}
    t2 = t1 + MS
    after = await store.set_notification_flags("u1", n["id"], {"is_dismissed": True, "is_read": False}, t2)
    assert after == {**n, "is_read": True, "is_dismissed": True, "updated_at": t2}
    assert await store.get_notification("u1", n["id"]) == after


async def test_set_flags_of_other_user_is_none(store: DocumentStore) -> None:
    n = note("u1")
    await store.create_notification(n)
    assert await store.set_notification_flags("u2", n["id"], {"is_read": True}, utcnow()) is None
    assert await store.set_notification_flags("u1", new_id(), {"is_read": True}, utcnow()) is None
    assert await store.get_notification("u1", n["id"]) == n


async def test_purge_expired(store: DocumentStore) -> None:
    now = virtual_now()
    old = note("u1", expires_at=now - dt.timedelta(seconds=1))
    edge = note("u2", expires_at=now)
    live = note("u1", expires_at=now + MS)
    for n in (old, edge, live):
        await store.create_notification(n)
    assert await store.purge_expired(now) == 2
    assert await list_ids(store, "u1") == [live["id"]]
    assert await list_ids(store, "u2") == []
    assert await store.purge_expired(now) == 0


async def test_expired_notifications_are_gone_from_every_answer_at_once(
    store: DocumentStore, request: pytest.FixtureRequest
) -> None:
    # No purge runs here: what is past expires_at by the wall clock is invisible anyway.
    now = utcnow()
    gone = note("u1", title="one-time code 1234", expires_at=now - MS)
    live = note("u1", title="one-time code 5678", expires_at=now + DAY)
    for n in (gone, live):
        await store.create_notification(n)
    assert await store.get_notification("u1", gone["id"]) is None
    assert await store.get_notification("u1", live["id"]) == live
    assert await list_ids(store, "u1") == [live["id"]]
    assert await list_ids(store, "u1", q="one-time") == [live["id"]]
    assert await list_ids(store, "u1", app_name=gone["app_name"]) == [live["id"]]
    assert await store.set_notification_flags("u1", gone["id"], {"is_read": True}, now) is None
    # Invoke tells "expired" (409) from "unknown" (404) while the store still holds the row;
    # mongomock and mongoeco apply the TTL index on read, so they never do (MongoDB's TTL
    # monitor removes it within about a minute; SQLite keeps it until the purge).
    held = await store.get_notification("u1", gone["id"], include_expired=True)
    if request.node.callspec.params["store"] in ("mongomock", "mongoeco"):
        assert held is None
    else:
        assert held == gone
    assert await store.get_notification("u2", gone["id"], include_expired=True) is None
    assert await store.get_notification("u1", live["id"], include_expired=True) == live


# -- device API keys, counts, bulk actions (SPEC "Phones, bulk actions, counts") -------------
def api_key(user_id: str, device_id: str, **over: Any) -> Record:
    k = {"id": uuid.uuid4().hex, "user_id": user_id, "device_id": device_id, "name": "Tasker",
         "key_hash": uuid.uuid4().hex, "created_at": utcnow(), "last_used_at": None}
    return {**k, **over}


async def test_api_keys_round_trip_list_touch_and_delete(store: DocumentStore) -> None:
    t0 = utcnow()
    first = api_key("u1", "d1", created_at=t0)
    second = api_key("u1", "d1", created_at=t0 + MS, name=None)
    other_device, other_user = api_key("u1", "d2"), api_key("u2", "d1")
    for k in (second, first, other_device, other_user):
        await store.create_api_key(k)
    assert await store.get_api_key(first["key_hash"]) == first
    assert await store.get_api_key("no-such-hash") is None
    assert [k["id"] for k in await store.list_api_keys("u1", "d1")] == [first["id"], second["id"]]
    assert await store.list_api_keys("u2", "d2") == []
    used = t0 + 5 * MS
    await store.touch_api_key(second["id"], used)
    await store.touch_api_key("missing", used)
    assert (await store.get_api_key(second["key_hash"]))["last_used_at"] == used
    # another user's or another device's key is not deleted
    assert await store.delete_api_key("u2", "d1", first["id"]) is False
    assert await store.delete_api_key("u1", "d2", first["id"]) is False
    assert await store.delete_api_key("u1", "d1", first["id"]) is True
    assert await store.delete_api_key("u1", "d1", first["id"]) is False
    assert await store.get_api_key(first["key_hash"]) is None
    assert [k["id"] for k in await store.list_api_keys("u1", "d1")] == [second["id"]]


async def test_api_key_hash_is_unique_and_deleted_with_its_user(store: DocumentStore) -> None:
    user = await add_user(store)
    k = api_key(user["id"], "d1")
    await store.create_api_key(k)
    with pytest.raises(DuplicateKey):
        await store.create_api_key(api_key(user["id"], "d1", key_hash=k["key_hash"]))
    await store.delete_user(user["id"])
    assert await store.get_api_key(k["key_hash"]) is None


async def test_counts_cover_live_undismissed_notifications(store: DocumentStore) -> None:
    rows = [
        note("u1", app_name="Mail", category="Work"),
        note("u1", app_name="Mail", category="Work", is_read=True),
        note("u1", app_name="Chat", category="Personal"),
        note("u1", app_name="Chat", category="Personal", is_dismissed=True),  # not counted
        note("u1", app_name="Ads", category="Junk", expires_at=utcnow() - MS),  # expired: not counted
        note("u2", app_name="Mail"),  # someone else's
    ]
    for n in rows:
        await store.create_notification(n)
    assert await store.count_notifications("u1") == {
        "total": 3, "unread": 2, "by_category": {"Work": 2, "Personal": 1}, "by_app": {"Mail": 1, "Chat": 1},
    }
    assert await store.count_notifications("u3") == {"total": 0, "unread": 0, "by_category": {}, "by_app": {}}


async def test_set_flags_where_returns_only_what_it_changed(store: DocumentStore) -> None:
    from store.documents import Selection

    t0 = utcnow()
    old_mail = note("u1", app_name="Mail", created_at=t0 - DAY)
    new_mail = note("u1", app_name="Mail", created_at=t0)
    read_mail = note("u1", app_name="Mail", is_read=True, created_at=t0)
    chat = note("u1", app_name="Chat", category="Work", created_at=t0)
    theirs = note("u2", app_name="Mail", created_at=t0)
    for n in (old_mail, new_mail, read_mail, chat, theirs):
        await store.create_notification(n)
    t1 = t0 + MS
    changed = await store.set_flags_where(Selection("u1", app_name="Mail", before=t0), {"is_read": True}, t1)
    assert changed == [{**old_mail, "is_read": True, "updated_at": t1}]
    changed = await store.set_flags_where(Selection("u1", app_name="Mail"), {"is_read": True}, t1)
    assert [n["id"] for n in changed] == [new_mail["id"]]  # the read ones are left alone
    assert await store.set_flags_where(Selection("u1", app_name="Mail"), {"is_read": True}, t1) == []
    ids = (chat["id"], theirs["id"], new_id())  # another user's id and an unknown one: skipped
    changed = await store.set_flags_where(Selection("u1", ids=ids), {"is_dismissed": True}, t1)
    assert changed == [{**chat, "is_dismissed": True, "updated_at": t1}]
    assert await store.set_flags_where(Selection("u1", ids=()), {"is_read": True}, t1) == []
    changed = await store.set_flags_where(Selection("u1", category="Work"), {"is_read": True}, t1)
    assert [n["id"] for n in changed] == [chat["id"]]
    keyed = note("u1", source_device_id="d1", source_key="0|com.whatsapp|1|null|10134")
    await store.create_notification(keyed)
    assert await store.set_flags_where(
        Selection("u1", source_key=keyed["source_key"], source_device_id="d2"), {"is_dismissed": True}, t1) == []
    changed = await store.set_flags_where(
        Selection("u1", source_key=keyed["source_key"], source_device_id="d1"), {"is_dismissed": True}, t1)
    assert [n["id"] for n in changed] == [keyed["id"]]
    assert await store.get_notification("u2", theirs["id"]) == theirs
    many = [note("u1", app_name="Bulk") for _ in range(600)]
    for n in many:
        await store.create_notification(n)
    changed = await store.set_flags_where(
        Selection("u1", ids=tuple(n["id"] for n in many)), {"is_read": True}, t1)
    assert len(changed) == 600
