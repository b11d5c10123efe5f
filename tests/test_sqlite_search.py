"""The SQLite search index indexed in batches (store/sqlite_search.py): inserts do not
index, yet a search sees every stored notification; deletes, updates, purges, account
deletion, rowid reuse, a crash before indexing, and files with the older eager
triggers all keep the index equal to the table."""
from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import subprocess
import sys
import textwrap
from typing import Any

from store.documents import utcnow
from store.sqlite import SQLiteStore
from store.sqlite_search import LazyIndex
from tests.harness import new_user
from tests.test_search import index_consistent
from tests.test_store_contract import list_ids, note
from tests.test_updates_actions import post

# The search index as the previous version made it: every insert indexed by a trigger.
EAGER_INDEX = """
CREATE VIRTUAL TABLE IF NOT EXISTS notifications_fts USING fts5(
    title, body, app_name, content='notifications', content_rowid='rowid', tokenize='trigram', columnsize=0
);
CREATE TRIGGER IF NOT EXISTS notifications_fts_insert AFTER INSERT ON notifications BEGIN
    INSERT INTO notifications_fts (rowid, title, body, app_name) VALUES (new.rowid, new.title, new.body, new.app_name);
END;
CREATE TRIGGER IF NOT EXISTS notifications_fts_delete AFTER DELETE ON notifications BEGIN
    INSERT INTO notifications_fts (notifications_fts, rowid, title, body, app_name)
        VALUES ('delete', old.rowid, old.title, old.body, old.app_name);
END;
CREATE TRIGGER IF NOT EXISTS notifications_fts_update AFTER UPDATE OF title, body, app_name ON notifications BEGIN
    INSERT INTO notifications_fts (notifications_fts, rowid, title, body, app_name)
        VALUES ('delete', old.rowid, old.title, old.body, old.app_name);
    INSERT INTO notifications_fts (rowid, title, body, app_name) VALUES (new.rowid, new.title, new.body, new.app_name);
END;
"""


def indexed(path: str, word: str) -> int:
    """Rows the index itself holds for ``word`` (no catch-up: another connection)."""
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM notifications_fts WHERE notifications_fts MATCH ?",
                              (f'"{word}"',)).fetchone()[0])


def raw_insert(path: str, record: dict[str, Any]) -> None:
    """Insert a row as another process would: plain SQL on its own connection."""
    with sqlite3.connect(path) as db:
        cols = [c for c in record if c in {r[1] for r in db.execute("PRAGMA table_info(notifications)")}]
        values = [v.isoformat(timespec="milliseconds") if isinstance(v, dt.datetime) else v
                  for v in (record[c] for c in cols)]
        db.execute(f"INSERT INTO notifications ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values)


def mark(path: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT upto FROM notifications_fts_mark").fetchone()[0])


async def lazy_store(path: str) -> SQLiteStore:
    """A store whose background indexing never starts by itself within a test."""
    store = SQLiteStore(path)
    await store.open()
    assert store._index is not None
    await store._index.stop()
    store._index = LazyIndex(store._write, store._run, batch=10**9, interval=3600.0)
    store._index.start()
    return store


async def test_an_insert_does_not_index_but_a_search_sees_it(tmp_path) -> None:
    path = str(tmp_path / "n.sqlite3")
    store = await lazy_store(path)
    try:
        first = note("u1", title="Your code is 424242")
        await store.create_notification(first)
        assert indexed(path, "424242") == 0  # off the insert path
        assert await list_ids(store, "u1", q="code is 4242") == [first["id"]]
        assert indexed(path, "424242") == 1
        index_consistent(path)
        # A change of text, a delete and a purge of rows never indexed leave nothing behind.
        fresh = note("u1", title="Parcel 77 delivered", expires_at=utcnow() + dt.timedelta(hours=1))
        moved = note("u1", title="Meeting moved")
        dropped = note("u1", title="Dropped call")
        for n in (fresh, moved, dropped):
            await store.create_notification(n)
        assert await store.update_notification_content("u1", moved["id"], 1, {"title": "Meeting at 3"},
                                                        utcnow()) is not None
        await store.delete_notification("u1", dropped["id"])
        assert await store.purge_expired(utcnow() + dt.timedelta(hours=2)) == 1
        assert indexed(path, "Meeting") == 0
        assert await list_ids(store, "u1", q="meeting at") == [moved["id"]]
        assert await list_ids(store, "u1", q="moved") == []
        assert await list_ids(store, "u1", q="dropped") == []
        assert await list_ids(store, "u1", q="parcel") == []
        index_consistent(path)
        # Once indexed, the same changes go through the triggers.
        assert await store.update_notification_content("u1", moved["id"], 2, {"body": "bring slides"},
                                                        utcnow()) is not None
        assert await list_ids(store, "u1", q="slides") == [moved["id"]]
        await store.delete_notification("u1", first["id"])
        assert indexed(path, "424242") == 0
        index_consistent(path)
    finally:
        await store.close()


async def test_a_reused_rowid_below_the_mark_is_indexed_by_its_insert(tmp_path) -> None:
    path = str(tmp_path / "n.sqlite3")
    store = await lazy_store(path)
    try:
        old = note("u1", title="alpha one")
        top = note("u2", title="bravo two")
        await store.create_notification(old)
        await store.create_notification(top)
        assert await list_ids(store, "u1", q="alpha") == [old["id"]]  # catches up: mark = top's rowid
        upto = mark(path)
        await store.delete_user("u2")  # the newest row goes: its rowid is free again
        reused = note("u1", title="charlie three")
        await store.create_notification(reused)
        with sqlite3.connect(path) as db:
            rowid = db.execute("SELECT rowid FROM notifications WHERE id = ?", (reused["id"],)).fetchone()[0]
        assert rowid <= upto  # what this test is about: SQLite gave it the freed rowid
        assert indexed(path, "charlie") == 1
        assert await list_ids(store, "u1", q="charlie") == [reused["id"]]
        assert await list_ids(store, "u2", q="bravo") == []
        index_consistent(path)
    finally:
        await store.close()


CRASH = textwrap.dedent("""
    import asyncio, os, sys
    sys.path[:0] = [{root!r}]
    from store.sqlite import SQLiteStore
    from tests.test_store_contract import note

    async def main():
        store = SQLiteStore({path!r})
        await store.open()
        for i in range(5):
            await store.create_notification(note("u1", title=f"crash kiwi {{i}}"))
        os._exit(0)  # no close: nothing indexed (fewer than a batch, before the timer)

    asyncio.run(main())
""")


async def test_rows_a_crashed_process_never_indexed_are_indexed_at_open(tmp_path) -> None:
    path = str(tmp_path / "n.sqlite3")
    root = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    subprocess.run([sys.executable, "-c", CRASH.format(root=root, path=path)], check=True, timeout=120)
    assert indexed(path, "kiwi") == 0
    store = SQLiteStore(path)
    await store.open()
    try:
        assert indexed(path, "kiwi") == 5  # at open, before any search
        index_consistent(path)
        assert len(await list_ids(store, "u1", q="crash kiwi")) == 5
    finally:
        await store.close()


async def test_a_file_with_the_eager_triggers_moves_to_batches_without_indexing_twice(tmp_path) -> None:
    path = str(tmp_path / "eager.sqlite3")
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:  # back to the previous version's schema
        db.executescript("DROP TABLE notifications_fts_mark; DROP TRIGGER notifications_fts_insert;"
                         "DROP TRIGGER notifications_fts_delete; DROP TRIGGER notifications_fts_update;"
                         "DROP TABLE notifications_fts;" + EAGER_INDEX)
    before = note("u1", title="eager times")
    raw_insert(path, before)  # a row the eager trigger indexed
    assert indexed(path, "eager") == 1
    store = await lazy_store(path)
    try:
        assert indexed(path, "eager") == 1 and mark(path) >= 1
        after = note("u1", title="lazy times")
        await store.create_notification(after)
        assert indexed(path, "lazy") == 0  # the insert trigger is the conditional one now
        assert await list_ids(store, "u1", q="times") == [after["id"], before["id"]]
        index_consistent(path)  # 'eager times' is in the index once, not twice
    finally:
        await store.close()
    # The previous version's CREATE ... IF NOT EXISTS finds the names taken: still one trigger each.
    with sqlite3.connect(path) as db:
        db.executescript(EAGER_INDEX)
        sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'notifications_fts_insert'").fetchone()[0]
    assert "WHEN new.rowid <=" in sql


async def test_a_full_batch_is_indexed_in_the_background(tmp_path) -> None:
    path = str(tmp_path / "n.sqlite3")
    store = SQLiteStore(path)
    await store.open()
    try:
        assert store._index is not None
        for i in range(store._index.batch):
            await store.create_notification(note("u1", title=f"batch melon {i}"))
        for _ in range(600):  # no search: the batch (or the timer) indexes them
            if indexed(path, "melon") == store._index.batch:
                break
            await asyncio.sleep(0.05)
        assert indexed(path, "melon") == store._index.batch
        index_consistent(path)
    finally:
        await store.close()


async def test_rows_another_process_inserted_are_indexed_by_the_timer(tmp_path) -> None:
    """A node of the previous version sharing the file inserts without indexing, and its own
    searches read the index directly: this node's timer indexes those rows too, though it
    neither inserted nor searched anything itself."""
    path = str(tmp_path / "shared.sqlite3")
    store = SQLiteStore(path)
    await store.open()
    try:
        assert store._index is not None
        await store._index.stop()
        store._index = LazyIndex(store._write, store._run, batch=10**9, interval=0.1)
        store._index.start()
        other = note("u1", title="shared papaya")
        raw_insert(path, other)  # the other process's insert: above the mark, not indexed
        assert indexed(path, "papaya") == 0
        for _ in range(100):
            if indexed(path, "papaya") == 1:
                break
            await asyncio.sleep(0.05)
        assert indexed(path, "papaya") == 1
        index_consistent(path)
    finally:
        await store.close()


async def test_an_idle_timer_round_opens_no_write_transaction(tmp_path) -> None:
    """With nothing above the mark, a timer round only reads: it never takes the file's
    write lock, which a --workers sibling (or a previous-version node) would wait on."""
    path = str(tmp_path / "idle.sqlite3")
    store = SQLiteStore(path)
    await store.open()
    writes: list[Any] = []

    async def counted_write(fn: Any) -> Any:
        writes.append(fn)
        return await store._write(fn)

    try:
        assert store._index is not None
        await store._index.stop()
        store._index = LazyIndex(counted_write, store._run, batch=10**9, interval=0.05)
        store._index.start()
        await asyncio.sleep(0.5)  # ~10 rounds with nothing to index
        assert writes == []
        raw_insert(path, note("u1", title="late kiwi"))  # now there is: the next round writes
        for _ in range(100):
            if indexed(path, "kiwi") == 1:
                break
            await asyncio.sleep(0.05)
        assert indexed(path, "kiwi") == 1
        assert len(writes) >= 1
    finally:
        await store.close()


async def test_a_clean_close_leaves_nothing_unindexed(tmp_path) -> None:
    path = str(tmp_path / "n.sqlite3")
    store = await lazy_store(path)
    await store.create_notification(note("u1", title="closing lime"))
    assert indexed(path, "lime") == 0
    await store.close()
    assert indexed(path, "lime") == 1
    index_consistent(path)


async def test_a_posted_or_updated_notification_is_searchable_at_once(node) -> None:
    user = await new_user(node)
    phone = await user.device("mobile")

    async def search(q: str) -> list[Any]:
        r = await user.call("GET", "/api/v1/notifications?q=" + q)
        assert r.status == 200, r.body
        return [n["id"] for n in r.body["notifications"]]

    # Under a batch and well under the timer's second: only the search's catch-up can find these.
    for i in range(3):
        first = await post(user, {"app_name": "Signal", "title": f"Ann {i}", "body": f"papaya {i} at noon",
                                  "source_key": f"chat-{i}"}, phone)
        assert first.status == 201, first.body
        assert await search(f"papaya%20{i}") == [first.body["id"]]
        grown = await post(user, {"app_name": "Signal", "title": f"Ann {i}", "body": f"quince {i} instead",
                                  "source_key": f"chat-{i}"}, phone)
        assert grown.status == 200 and grown.body["version"] == 2, grown.body
        assert await search(f"quince%20{i}") == [first.body["id"]]
        assert await search(f"papaya%20{i}") == []
