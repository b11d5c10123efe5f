"""Search through the SQLite trigram index: kept in step with the table, built for
older files, and never an error for anything a client can type."""
from __future__ import annotations

import datetime as dt
import os
import sqlite3
import urllib.parse

from store.documents import NotificationQuery, utcnow
from store.sqlite import SQLiteStore
from store.sqlite_schema import SCHEMA
from tests.harness import new_user
from tests.test_store_contract import list_ids, note


def index_consistent(path: str) -> None:
    """FTS5's own check: raises if the index and the table disagree."""
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO notifications_fts (notifications_fts, rank) VALUES ('integrity-check', 1)")


async def test_the_index_follows_inserts_updates_and_deletes(tmp_path) -> None:
    path = str(tmp_path / "n.sqlite3")
    store = SQLiteStore(path)
    await store.open()
    try:
        kept = note("u1", title="Your code is 424242", expires_at=utcnow() + dt.timedelta(days=30))
        gone = note("u1", title="Parcel delivered", expires_at=utcnow() + dt.timedelta(days=1))
        other = note("u2", title="Your code is 777")
        for n in (kept, gone, other):
            await store.create_notification(n)
        assert await list_ids(store, "u1", q="code is") == [kept["id"]]
        assert await list_ids(store, "u1", q="parcel") == [gone["id"]]
        # A change of title (an update in place) moves it in the index.
        with sqlite3.connect(path) as db:
            db.execute("UPDATE notifications SET title = 'Boarding pass' WHERE id = ?", (kept["id"],))
        assert await list_ids(store, "u1", q="code is") == []
        assert await list_ids(store, "u1", q="BOARDING") == [kept["id"]]
        # Flag changes leave it alone; purge and account deletion remove entries.
        await store.set_notification_flags("u1", kept["id"], {"is_read": True}, utcnow())
        assert await store.purge_expired(utcnow() + dt.timedelta(days=2)) == 1
        await store.delete_user("u2")
        index_consistent(path)
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM notifications_fts WHERE notifications_fts MATCH 'code'"
                              ).fetchone()[0] == 0
        assert await list_ids(store, "u1", q="boarding", is_read=True) == [kept["id"]]
    finally:
        await store.close()


async def test_a_file_from_before_the_index_is_indexed_at_open(tmp_path) -> None:
    path = str(tmp_path / "old.sqlite3")
    old = note("u1", title="Invoice 50% OFF", body="from the old days")
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)  # the tables as they were, no search index
        # Only the columns the first schema had (later ones come by migration).
        first = {row[1] for row in db.execute("PRAGMA table_info(notifications)")}
        cols = [c for c in old if c in first]
        values = [v.isoformat(timespec="milliseconds") if isinstance(v, dt.datetime) else v for v in
                  (old[c] for c in cols)]
        db.execute(f"INSERT INTO notifications ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values)
    store = SQLiteStore(path)
    await store.open()
    try:
        assert await list_ids(store, "u1", q="old days") == [old["id"]]
        assert await list_ids(store, "u1", q="50% o") == [old["id"]]
        index_consistent(path)
    finally:
        await store.close()
    # Opening again does not index twice.
    store = SQLiteStore(path)
    await store.open()
    try:
        rows = await store.list_notifications(NotificationQuery(user_id="u1", q="old days"))
        assert [r["id"] for r in rows] == [old["id"]]
        index_consistent(path)
    finally:
        await store.close()
    assert os.path.exists(path)


async def test_fts_syntax_typed_by_a_user_is_literal_text_and_never_an_error(node) -> None:
    user = await new_user(node)
    phone = await user.device("mobile")
    hit = await user.post('say "hi" AND NEAR(x y) title:* ^start -not', device=phone, body="b")
    await user.post("plain", device=phone, body="nothing here")
    queries = ['"""', '"hi"', "AND", "OR NOT", "NEAR(x y)", "title:*", "^start", "-not", "***", "a\" OR \"b",
               "(((", "col:abc", "é\u0301e", "🙂🙂🙂", "x" * 200]
    for q in queries:
        r = await user.call("GET", "/api/v1/notifications?q=" + urllib.parse.quote(q))
        assert r.status == 200, (q, r.status, r.body)
        ids = [n["id"] for n in r.body["notifications"]]
        expected = [hit["id"]] if q.lower() in hit["title"].lower() else []
        assert ids == expected, (q, ids)
    r = await user.call("GET", "/api/v1/notifications?q=" + "x" * 201)
    assert r.status == 400 and r.body["error"]["code"] == "validation_error"
