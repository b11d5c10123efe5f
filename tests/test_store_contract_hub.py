"""The store contract for rules, device preferences and digest schedules (store/hub_store.py).

Same backends as tests/test_store_contract.py (its ``store`` fixture):
SQLite on a real file, mongomock-motor, real MongoDB when configured.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from typing import Any

from store.documents import DocumentStore, utcnow
from store.sqlite import SQLiteStore
from store.sqlite_schema import SCHEMA
from tests.test_store_contract import add_user, new_id, note


def rule(user_id: str, **over: Any) -> dict[str, Any]:
    r = {"id": new_id(), "user_id": user_id, "name": "r", "enabled": True, "position": None,
         "match": {"app_name": "Slack*"}, "action": {"silent": True}, "created_at": utcnow()}
    return {**r, **over}


async def test_rules_append_in_order_and_read_back(store: DocumentStore) -> None:
    a = await store.create_rule(rule("u1", name="a"), 100)
    b = await store.create_rule(rule("u1", name="b"), 100)
    c = await store.create_rule(rule("u1", name="c", position=-5), 100)
    assert a is not None and b is not None and c is not None
    assert (a["position"], b["position"], c["position"]) == (0, 1, -5)
    listed = await store.list_rules("u1")
    assert [r["name"] for r in listed] == ["c", "a", "b"]
    assert listed[1] == a and listed[1]["match"] == {"app_name": "Slack*"}
    assert await store.list_rules("u2") == []


async def test_rule_limit_is_per_user_and_atomic(store: DocumentStore) -> None:
    made = await asyncio.gather(*(store.create_rule(rule("u1"), 3) for _ in range(3)))
    assert all(made)
    assert await store.create_rule(rule("u1"), 3) is None
    assert len(await store.list_rules("u1")) == 3
    assert await store.create_rule(rule("u2"), 3) is not None


async def test_rule_creates_racing_past_the_limit_never_overshoot_it(store: DocumentStore) -> None:
    await store.create_rule(rule("u3"), 3)
    made = await asyncio.gather(*(store.create_rule(rule("u3"), 3) for _ in range(10)))
    kept = await store.list_rules("u3")
    assert 1 <= len(kept) <= 3
    assert {r["id"] for r in made if r is not None} <= {r["id"] for r in kept}  # a refused create left no row


async def test_update_and_delete_rule_only_own(store: DocumentStore) -> None:
    r = await store.create_rule(rule("u1"), 100)
    assert r is not None
    assert await store.update_rule("u2", r["id"], {"name": "x"}) is None
    got = await store.update_rule("u1", r["id"], {"name": "x", "enabled": False, "position": 7,
                                                  "action": {"drop": True}})
    assert got is not None and got["name"] == "x" and got["enabled"] is False and got["position"] == 7
    assert (await store.list_rules("u1"))[0] == got
    assert await store.update_rule("u1", new_id(), {"name": "x"}) is None
    assert not await store.delete_rule("u2", r["id"])
    assert await store.delete_rule("u1", r["id"])
    assert not await store.delete_rule("u1", r["id"])
    assert await store.list_rules("u1") == []


async def test_preferences_merge_per_device(store: DocumentStore) -> None:
    assert await store.get_preferences("u1") == {}
    assert await store.update_preferences("u1", "d1", {"muted_apps": ["a"]}) == {"muted_apps": ["a"]}
    await store.update_preferences("u1", "d2", {"blocked_apps": ["b"]})
    merged = await store.update_preferences("u1", "d1", {"muted_apps": ["c"], "sync_dismissals": False})
    assert merged == {"muted_apps": ["c"], "sync_dismissals": False}
    assert await store.get_preferences("u1") == {
        "d1": {"muted_apps": ["c"], "sync_dismissals": False}, "d2": {"blocked_apps": ["b"]},
    }
    assert await store.get_preferences("u2") == {}


async def test_concurrent_preference_updates_of_different_fields_all_survive(store: DocumentStore) -> None:
    quiet = {"start": "22:00", "end": "07:00", "timezone": "UTC"}
    await asyncio.gather(
        store.update_preferences("u1", "d1", {"muted_apps": ["m"]}),
        store.update_preferences("u1", "d1", {"blocked_apps": ["b"]}),
        store.update_preferences("u1", "d1", {"sync_dismissals": False}),
        store.update_preferences("u1", "d1", {"quiet_hours": quiet}),
    )
    assert (await store.get_preferences("u1"))["d1"] == {
        "muted_apps": ["m"], "blocked_apps": ["b"], "sync_dismissals": False, "quiet_hours": quiet,
    }


async def test_digest_schedules_listed_when_enabled(store: DocumentStore) -> None:
    assert await store.get_digest_schedule("u1") is None
    await store.set_digest_schedule("u1", {"enabled": True, "time": "08:00", "timezone": "UTC"})
    await store.set_digest_schedule("u2", {"enabled": False, "time": "09:00", "timezone": "UTC"})
    assert await store.get_digest_schedule("u1") == {"enabled": True, "time": "08:00", "timezone": "UTC"}
    assert await store.list_digest_schedules() == [
        {"enabled": True, "time": "08:00", "timezone": "UTC", "user_id": "u1"}
    ]
    await store.set_digest_schedule("u1", {"enabled": False, "time": "08:00", "timezone": "UTC"})
    assert await store.list_digest_schedules() == []


async def test_notification_keeps_its_route_and_silent(store: DocumentStore) -> None:
    n = note("u1", silent=True, route={"types": ["mobile"], "skip": ["d9"]})
    await store.create_notification(n)
    got = await store.get_notification("u1", n["id"])
    assert got is not None and got["silent"] is True and got["route"] == {"types": ["mobile"], "skip": ["d9"]}


async def test_deleted_user_leaves_no_rules_preferences_or_schedule(store: DocumentStore) -> None:
    user = await add_user(store)
    await store.create_rule(rule(user["id"]), 100)
    await store.update_preferences(user["id"], "d1", {"muted_apps": []})
    await store.set_digest_schedule(user["id"], {"enabled": True, "time": "08:00", "timezone": "UTC"})
    await store.delete_user(user["id"])
    assert await store.list_rules(user["id"]) == []
    assert await store.get_preferences(user["id"]) == {}
    assert await store.get_digest_schedule(user["id"]) is None


async def test_sqlite_file_from_before_rules_gains_tables_and_columns(tmp_path: Any) -> None:
    path = str(tmp_path / "old.sqlite3")
    old = SCHEMA.split("-- Rules, device preferences")[0]
    conn = sqlite3.connect(path)
    conn.executescript(old)
    conn.execute("INSERT INTO notifications (id, user_id, app_name, title, body, priority, is_read,"
                 " is_dismissed, created_at) VALUES ('n1', 'u1', 'A', 't', 'b', 0, 0, 0, ?)",
                 ((utcnow() - dt.timedelta(hours=1)).isoformat(timespec="milliseconds"),))
    conn.commit()
    conn.close()
    s = SQLiteStore(path)
    await s.open()
    try:
        got = await s.get_notification("u1", "n1")
        assert got is not None and got["silent"] is False and got["route"] is None
        assert await s.create_rule(rule("u1"), 100) is not None
    finally:
        await s.close()
