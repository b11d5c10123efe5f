"""WAL checkpoints run on their own thread, never inside a write's COMMIT."""
from __future__ import annotations

import asyncio
import os
from typing import Any

from store import sqlite_checkpoint
from store.sqlite import SQLiteStore
from tests.test_store_contract import list_ids, note

PAGE = 4096


async def _fill(store: SQLiteStore, user: str, rows: int) -> None:
    # Each body fills about a page: 1,500 rows take the WAL past SQLite's
    # default automatic checkpoint at 1,000 pages.
    for _ in range(0, rows, 100):
        await asyncio.gather(*(store.create_notification(note(user, body="x" * 3500)) for _ in range(100)))


def _sizes(path: str) -> tuple[int, int]:
    wal = path + "-wal"
    return os.path.getsize(path), os.path.getsize(wal) if os.path.exists(wal) else 0


async def test_writes_no_longer_checkpoint_in_their_commit(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(sqlite_checkpoint, "INTERVAL", 3600.0)  # the thread stays quiet
    path = str(tmp_path / "n.sqlite3")
    store = SQLiteStore(path)
    await store.open()
    before, _ = _sizes(path)
    await _fill(store, "u1", 1500)
    db, wal = _sizes(path)
    # Everything is still in the WAL: no commit copied it into the database.
    assert db == before and wal > 1000 * PAGE
    await store.close()
    db, wal = _sizes(path)
    assert db > 1500 * 3500 and wal == 0  # closing folds the WAL in and truncates it


async def test_the_checkpoint_thread_folds_the_wal_in_while_writes_go_on(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(sqlite_checkpoint, "INTERVAL", 0.05)
    path = str(tmp_path / "n.sqlite3")
    store = SQLiteStore(path)
    await store.open()
    before, _ = _sizes(path)
    await _fill(store, "u1", 1500)
    for _ in range(100):
        if _sizes(path)[0] > before + 1000 * PAGE:
            break
        await asyncio.sleep(0.05)
    assert _sizes(path)[0] > before + 1000 * PAGE
    assert len(await list_ids(store, "u1", limit=200)) == 200  # and the data reads back
    await store.close()
