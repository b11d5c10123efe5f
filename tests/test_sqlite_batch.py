"""Group commit in the SQLite store: concurrent writes share a transaction,
yet each caller gets exactly its own success or failure."""
from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from store.errors import DuplicateKey
from store.documents import NotificationQuery
from store.sqlite import SQLiteStore
from tests.test_store_contract import list_ids, note


@pytest.fixture
async def store(tmp_path: Any):
    s = SQLiteStore(str(tmp_path / "notisync.sqlite3"))
    await s.open()
    yield s
    await s.close()


async def test_one_failing_write_fails_only_its_own_caller(store: SQLiteStore) -> None:
    taken = note("u1")
    await store.create_notification(taken)
    fresh = [note("u1") for _ in range(20)]
    results = await asyncio.gather(
        *(store.create_notification(n) for n in fresh[:10]),
        store.create_notification(note("u1", id=taken["id"], source_key="k")),  # id clash
        *(store.create_notification(n) for n in fresh[10:]),
        return_exceptions=True,
    )
    assert isinstance(results[10], DuplicateKey)
    assert all(created for r in results[:10] + results[11:] for _, created in [r])
    assert sorted(await list_ids(store, "u1", limit=50)) == sorted([taken["id"], *(n["id"] for n in fresh)])


async def test_a_failed_write_leaves_none_of_its_statements(store: SQLiteStore) -> None:
    kept = note("u1")

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM notifications")  # must be undone with the rest of this write
        raise ValueError("boom")

    results = await asyncio.gather(
        store.create_notification(kept), store._write(half_then_fail), store.create_notification(note("u2")),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)
    assert await list_ids(store, "u1") == [kept["id"]]
    assert len(await list_ids(store, "u2")) == 1


async def test_many_concurrent_writes_are_all_committed_before_close(tmp_path: Any) -> None:
    path = str(tmp_path / "notisync.sqlite3")
    store = SQLiteStore(path)
    await store.open()
    tasks = [asyncio.ensure_future(store.create_notification(note("u1"))) for _ in range(600)]
    await asyncio.sleep(0)
    await store.close()  # drains the queue first
    assert all(t.result()[1] for t in tasks)
    again = SQLiteStore(path)
    await again.open()
    try:
        rows = await again.list_notifications(NotificationQuery(user_id="u1", limit=1000))
        assert len(rows) == 600
    finally:
        await again.close()


async def test_a_failed_write_alone_leaves_none_of_its_statements(store: SQLiteStore) -> None:
    # A batch of one runs without savepoints: its failure must still undo it whole.
    kept = note("u1")
    await store.create_notification(kept)

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM notifications")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        await store._write(half_then_fail)
    assert await list_ids(store, "u1") == [kept["id"]]
    with pytest.raises(DuplicateKey):  # a lone unique violation is still the caller's DuplicateKey
        await store.create_notification(note("u1", id=kept["id"], source_key="other"))
    fresh = note("u1")
    assert (await store.create_notification(fresh))[1]  # and the connection is usable after both
    assert sorted(await list_ids(store, "u1")) == sorted([kept["id"], fresh["id"]])


async def test_a_cancelled_caller_does_not_stop_its_write_or_the_next(store: SQLiteStore) -> None:
    # As with run_in_executor: a write its caller stopped awaiting still runs, and nothing jams.
    first = note("u1")
    task = asyncio.ensure_future(store.create_notification(first))
    await asyncio.sleep(0)
    task.cancel()
    second = note("u1")
    assert (await store.create_notification(second))[1]
    assert sorted(await list_ids(store, "u1")) == sorted([first["id"], second["id"]])
