"""One contract suite for every DocumentStore: SQLite on a real file,
mongomock-motor, motor over the wire against mongoeco (a MongoDB-compatible
server, not MongoDB: see the ``mongoeco`` fixture), and a real MongoDB when
NOTISYNC_TEST_MONGO_URL is set (the ``store`` fixture: tests/fixtures.py)."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest

from store.errors import DuplicateKey
from store.documents import DocumentStore, NotificationQuery, Record, utcnow
from store.mongo import MongoStore
from store.sqlite import SQLiteStore
from store.sqlite_schema import SCHEMA
from store.sqlite_rows import encode_time

MS = dt.timedelta(milliseconds=1)
DAY = dt.timedelta(days=1)


def new_id() -> str:
    return str(uuid.uuid4())


async def add_user(store: DocumentStore, email: str | None = None) -> Record:
    email = email or f"{uuid.uuid4().hex[:8]}@example.com"
    user = {"id": new_id(), "email": email, "password_hash": "h", "created_at": utcnow()}
    return await store.create_user(user)


def device(user_id: str, **over: Any) -> Record:
    d = {"id": new_id(), "user_id": user_id, "device_name": "Pixel", "device_type": "android",
         "push_token": None, "last_seen": None, "created_at": utcnow(), "revoked_at": None}
    return {**d, **over}


def note(user_id: str, **over: Any) -> Record:
    now = utcnow()
    n = {"id": new_id(), "user_id": user_id, "source_device_id": None, "source_key": None,
         "app_name": "Mail", "title": "Hello", "body": "World", "category": "Personal",
         "priority": 0, "is_read": False, "is_dismissed": False, "created_at": now,
         "updated_at": now, "expires_at": now + dt.timedelta(days=7), "pending": False,
         "silent": False, "route": None}
    return {**n, **over}


def newest_first(records: list[Record]) -> list[str]:
    return [r["id"] for r in sorted(records, key=lambda r: (r["created_at"], r["id"]), reverse=True)]


async def list_ids(store: DocumentStore, user_id: str, **filters: Any) -> list[str]:
    rows = await store.list_notifications(NotificationQuery(user_id=user_id, **filters))
    return [r["id"] for r in rows]


# -- life cycle ---------------------------------------------------------------
async def test_ping_and_open_is_idempotent(store: DocumentStore) -> None:
    user = await add_user(store)
    await store.open()
    await store.ping()
    assert await store.get_user(user["id"]) == user


# -- users --------------------------------------------------------------------
async def test_create_user_lowercases_email_and_reads_back(store: DocumentStore) -> None:
    created = await add_user(store, "Ann.Lee@Example.COM")
    assert created["email"] == "ann.lee@example.com"
    assert await store.get_user(created["id"]) == created
    assert await store.get_user(new_id()) is None


async def test_email_is_unique_case_insensitively(store: DocumentStore) -> None:
    first = await add_user(store, "bob@example.com")
    with pytest.raises(DuplicateKey):
        await add_user(store, "BOB@Example.com")
    assert await store.get_user_by_email("bob@example.com") == first


async def test_get_user_by_email_ignores_case(store: DocumentStore) -> None:
    user = await add_user(store, "Cat@Example.com")
    assert await store.get_user_by_email("cAT@EXAMPLE.COM") == user
    assert await store.get_user_by_email("dog@example.com") is None


# -- refresh tokens -----------------------------------------------------------
async def test_refresh_token_ok_then_reused(store: DocumentStore) -> None:
    now = utcnow()
    await store.add_refresh_token("t1", "u1", now + dt.timedelta(days=1))
    assert await store.use_refresh_token("t1", now) == "ok"
    assert await store.use_refresh_token("t1", now + MS) == "reused"


def virtual_now() -> dt.datetime:
    """A "now" a day ahead, for expiry tests: records that expire relative
    to it are still live by the wall clock, so a TTL monitor (real MongoDB's,
    or mongomock's, which runs on every access) cannot remove them first."""
    return utcnow() + DAY


async def test_refresh_token_unknown_and_expired(store: DocumentStore) -> None:
    now = virtual_now()
    await store.add_refresh_token("old", "u1", now - dt.timedelta(seconds=1))
    await store.add_refresh_token("edge", "u1", now)
    assert await store.use_refresh_token("nope", now) == "unknown"
    assert await store.use_refresh_token("old", now) == "unknown"
    assert await store.use_refresh_token("edge", now) == "unknown"
    # A token used, then expired, is unknown too (expiry wins).
    await store.add_refresh_token("late", "u1", now + MS)
    assert await store.use_refresh_token("late", now) == "ok"
    assert await store.use_refresh_token("late", now + 2 * MS) == "unknown"


async def test_concurrent_use_of_one_token_gives_one_ok(store: DocumentStore) -> None:
    now = utcnow()
    await store.add_refresh_token("race", "u1", now + dt.timedelta(hours=1))
    results = await asyncio.gather(*(store.use_refresh_token("race", now) for _ in range(5)))
    assert sorted(results) == ["ok"] + ["reused"] * 4


async def test_revoke_refresh_tokens_only_hits_that_user(store: DocumentStore) -> None:
    later = utcnow() + dt.timedelta(days=1)
    for token, user in (("a1", "ua"), ("a2", "ua"), ("b1", "ub")):
        await store.add_refresh_token(token, user, later)
    await store.revoke_refresh_tokens("ua")
    assert await store.use_refresh_token("a1", utcnow()) != "ok"
    assert await store.use_refresh_token("a2", utcnow()) != "ok"
    assert await store.use_refresh_token("b1", utcnow()) == "ok"


# -- devices ------------------------------------------------------------------
async def test_create_device_reads_back(store: DocumentStore) -> None:
    d = device("u1", push_token="tok")
    assert await store.create_device(d) == (d, True)
    assert await store.get_device(d["id"]) == d
    assert await store.get_device(new_id()) is None


async def test_create_device_is_idempotent_for_same_user(store: DocumentStore) -> None:
    d = device("u1")
    await store.create_device(d)
    again = {**d, "device_name": "Renamed", "created_at": utcnow() + MS}
    assert await store.create_device(again) == (d, False)
    assert await store.get_device(d["id"]) == d


async def test_create_device_returns_revoked_existing(store: DocumentStore) -> None:
    d = device("u1")
    await store.create_device(d)
    now = utcnow()
    assert await store.revoke_device("u1", d["id"], now)
    stored, created = await store.create_device(device("u1", id=d["id"]))
    assert created is False and stored["revoked_at"] == now


async def test_create_device_id_of_another_user_is_duplicate(store: DocumentStore) -> None:
    d = device("u1")
    await store.create_device(d)
    with pytest.raises(DuplicateKey):
        await store.create_device(device("u2", id=d["id"]))
    assert await store.get_device(d["id"]) == d


async def test_list_devices_oldest_first_without_revoked(store: DocumentStore) -> None:
    base = utcnow()
    ds = [device("u1", created_at=base + i * MS) for i in range(3)]
    for d in (ds[2], ds[0], ds[1]):
        await store.create_device(d)
    await store.create_device(device("u2"))
    assert [d["id"] for d in await store.list_devices("u1")] == [d["id"] for d in ds]
    await store.revoke_device("u1", ds[1]["id"], utcnow())
    assert await store.list_devices("u1") == [ds[0], ds[2]]


async def test_update_device_only_live_device_of_user(store: DocumentStore) -> None:
    d, gone = device("u1"), device("u1")
    await store.create_device(d)
    await store.create_device(gone)
    seen = utcnow()
    fields = {"device_name": "Work", "push_token": "p", "last_seen": seen}
    updated = await store.update_device("u1", d["id"], fields)
    assert updated == {**d, **fields}
    assert await store.get_device(d["id"]) == updated
    assert await store.update_device("u2", d["id"], {"device_name": "x"}) is None
    await store.revoke_device("u1", gone["id"], seen)
    assert await store.update_device("u1", gone["id"], {"device_name": "x"}) is None
    assert (await store.get_device(gone["id"]) or {})["device_name"] == "Pixel"


async def test_revoke_device_once(store: DocumentStore) -> None:
    d = device("u1")
    await store.create_device(d)
    assert await store.revoke_device("u2", d["id"], utcnow()) is False
    now = utcnow()
    assert await store.revoke_device("u1", d["id"], now) is True
    assert await store.revoke_device("u1", d["id"], now + MS) is False
    assert await store.get_device(d["id"]) == {**d, "revoked_at": now}


# -- notifications: create / get / delete ----------------------------------------
async def test_notification_round_trips_exactly(store: DocumentStore) -> None:
    stamp = dt.datetime(2026, 11, 25, 19, 57, 31, 123000, tzinfo=dt.timezone.utc)
    n = note("u1", source_device_id="d1", source_key="pkg|1", priority=3, is_read=True,
             created_at=stamp, updated_at=stamp, expires_at=stamp + dt.timedelta(days=7))
    assert await store.create_notification(n) == (n, True)
    got = await store.get_notification("u1", n["id"])
    assert got == n
    assert got is not None and got["created_at"].utcoffset() == dt.timedelta(0)
    assert type(got["is_read"]) is bool and type(got["is_dismissed"]) is bool
    assert await store.get_notification("u2", n["id"]) is None
    assert await store.get_notification("u1", new_id()) is None


async def test_dedupe_by_device_and_source_key(store: DocumentStore) -> None:
    first = note("u1", source_device_id="d1", source_key="k")
    await store.create_notification(first)
    assert await store.create_notification(note("u1", source_device_id="d1", source_key="k", title="2")) == (first, False)
    nodev = note("u1", source_key="k")
    assert await store.create_notification(nodev) == (nodev, True)
    assert await store.create_notification(note("u1", source_key="k")) == (nodev, False)
    assert (await store.create_notification(note("u1", source_device_id="d2", source_key="k")))[1]
    assert (await store.create_notification(note("u2", source_device_id="d1", source_key="k")))[1]
    # A "|" inside ids must not make different pairs collide.
    assert (await store.create_notification(note("u1", source_device_id="a|b", source_key="c")))[1]
    assert (await store.create_notification(note("u1", source_device_id="a", source_key="b|c")))[1]
    assert len(await list_ids(store, "u1")) == 5


async def test_notifications_without_source_key_never_dedupe(store: DocumentStore) -> None:
    for _ in range(2):
        assert (await store.create_notification(note("u1", source_device_id="d1")))[1]
    assert len(await list_ids(store, "u1")) == 2


async def test_concurrent_duplicates_make_one_record(store: DocumentStore) -> None:
    results = await asyncio.gather(
        *(store.create_notification(note("u1", source_device_id="d1", source_key="same")) for _ in range(5))
    )
    assert sum(created for _, created in results) == 1
    assert len({r["id"] for r, _ in results}) == 1
    assert await list_ids(store, "u1") == [results[0][0]["id"]]


async def test_duplicate_notification_id_raises(store: DocumentStore) -> None:
    n = note("u1")
    await store.create_notification(n)
    with pytest.raises(DuplicateKey):
        await store.create_notification(note("u1", id=n["id"], source_key="k"))


async def test_delete_notification_only_own(store: DocumentStore) -> None:
    n = note("u1")
    await store.create_notification(n)
    await store.delete_notification("u2", n["id"])
    assert await store.get_notification("u1", n["id"]) == n
    await store.delete_notification("u1", n["id"])
    assert await store.get_notification("u1", n["id"]) is None


# -- notifications: listing ------------------------------------------------------
async def test_sessions_are_listed_until_ended_and_only_by_their_user(store: DocumentStore) -> None:
    mk = lambda uid, dev=None: {"id": new_id(), "user_id": uid, "device_id": dev,  # noqa: E731
                                "created_at": utcnow(), "ended_at": None}
    a1, a2, b1 = mk("ua"), mk("ua", "dev-1"), mk("ub")
    for s in (a1, a2, b1):
        await store.create_session(s)
    assert await store.get_session(a2["id"]) == a2
    assert sorted(s["id"] for s in await store.list_sessions("ua")) == sorted([a1["id"], a2["id"]])
    await store.end_sessions("ua", [a1["id"], b1["id"]], utcnow())  # b1 is not ua's: untouched
    assert [s["id"] for s in await store.list_sessions("ua")] == [a2["id"]]
    assert [s["id"] for s in await store.list_sessions("ub")] == [b1["id"]]
    ended = await store.get_session(a1["id"])
    assert ended is not None and ended["ended_at"] is not None
    await store.end_sessions("ua", [], utcnow())
    assert await store.get_session(new_id()) is None


async def test_password_hash_is_replaced_and_a_deleted_user_leaves_nothing(store: DocumentStore) -> None:
    user, other = await add_user(store), await add_user(store)
    assert await store.set_password_hash(user["id"], "new-hash") is True
    assert (await store.get_user(user["id"]))["password_hash"] == "new-hash"
    assert await store.set_password_hash(new_id(), "x") is False
    devices = [device(user["id"]), device(user["id"])]
    for d in [*devices, device(other["id"])]:
        await store.create_device(d)
    await store.revoke_device(user["id"], devices[1]["id"], utcnow())
    mine, theirs = note(user["id"]), note(other["id"])
    await store.create_notification(mine)
    await store.create_notification(theirs)
    await store.add_refresh_token("h-mine", user["id"], utcnow() + DAY)
    await store.add_refresh_token("h-theirs", other["id"], utcnow() + DAY)
    await store.create_session({"id": new_id(), "user_id": user["id"], "device_id": None,
                                "created_at": utcnow(), "ended_at": None})
    assert sorted(await store.delete_user(user["id"])) == sorted(d["id"] for d in devices)
    assert await store.get_user(user["id"]) is None
    assert await store.get_user_by_email(user["email"]) is None
    assert await store.get_device(devices[0]["id"]) is None and await store.get_device(devices[1]["id"]) is None
    assert await store.get_notification(user["id"], mine["id"]) is None
    assert await store.use_refresh_token("h-mine", utcnow()) == "unknown"
    assert await store.list_sessions(user["id"]) == []
    # the other user is untouched, and the email may register again
    assert await store.get_notification(other["id"], theirs["id"]) is not None
    assert await store.use_refresh_token("h-theirs", utcnow()) == "ok"
    await store.create_user({**user, "id": new_id()})


# -- SQLite: one file, several stores ------------------------------------------------
async def test_sqlite_data_survives_reopen(tmp_path: Any) -> None:
    path = str(tmp_path / "new" / "dir" / "n.sqlite3")
    first = SQLiteStore(path)
    await first.open()
    user = await add_user(first)
    n = note(user["id"], source_key="k")
    await first.create_notification(n)
    await first.close()
    second = SQLiteStore(path)
    await second.open()
    try:
        assert await second.get_user(user["id"]) == user
        assert await second.create_notification(note(user["id"], source_key="k")) == (n, False)
    finally:
        await second.close()


async def test_sqlite_file_from_before_pending_gains_the_column(tmp_path: Any) -> None:
    path = str(tmp_path / "old.sqlite3")
    import sqlite3

    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.replace("pending INTEGER NOT NULL DEFAULT 0,", ""))
    conn.execute("INSERT INTO notifications (id, user_id, app_name, title, body, priority, is_read,"
                 " is_dismissed, created_at) VALUES ('n1', 'u1', 'A', 't', 'b', 0, 0, 0, ?)",
                 (encode_time(utcnow() - dt.timedelta(hours=1)),))
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        got = await store.get_notification("u1", "n1")
        assert got is not None and got["pending"] is False
        assert await store.list_pending(utcnow(), 10) == []
        await store.create_notification(note("u1", pending=True))
        assert len(await store.list_pending(utcnow() + dt.timedelta(seconds=1), 10)) == 1
    finally:
        await store.close()


async def test_sqlite_two_stores_on_one_file(tmp_path: Any) -> None:
    path = str(tmp_path / "shared.sqlite3")
    a, b = SQLiteStore(path), SQLiteStore(path)
    await a.open()
    await b.open()
    try:
        user = await add_user(a, "eve@example.com")
        assert await b.get_user_by_email("EVE@example.com") == user
        with pytest.raises(DuplicateKey):
            await add_user(b, "Eve@Example.com")
        await b.add_refresh_token("t", user["id"], utcnow() + dt.timedelta(days=1))
        outcomes = await asyncio.gather(*(s.use_refresh_token("t", utcnow()) for s in (a, b, a, b)))
        assert sorted(outcomes) == ["ok", "reused", "reused", "reused"]
        made = await asyncio.gather(
            *(s.create_notification(note(user["id"], source_key="k")) for s in (a, b, a, b)))
        assert sum(created for _, created in made) == 1
        assert len(await list_ids(a, user["id"])) == 1
    finally:
        await a.close()
        await b.close()


# -- MongoDB: client construction ------------------------------------------------------
async def test_mongo_from_url_takes_db_name_from_path() -> None:
    named = MongoStore.from_url("mongodb://127.0.0.1:1/notes_prod")
    default = MongoStore.from_url("mongodb://127.0.0.1:1")
    try:
        assert (named.db_name, default.db_name) == ("notes_prod", "notisync")
    finally:
        await named.close()
        await default.close()
