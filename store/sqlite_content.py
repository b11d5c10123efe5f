"""SQLite: a notification's content updated in place, and version-aware pending clears.

A mixin of ``SQLiteStore`` (store/sqlite.py), kept apart so that file stays
small. Each method is one statement per row set, so a reader sees the old
content or the new one, never a mix.
"""
from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any, Awaitable, Callable

from store.documents import Record
from store.sqlite_rows import CONTENT_COLS, LIVE, _encode, _first, encode_time, live_since

CLEAR_CHUNK = 500


class ContentUpdates:
    _write: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]

    async def update_notification_content(
        self, user_id: str, notification_id: str, version: int, content: Record, now: dt.datetime
    ) -> Record | None:
        unknown = set(content) - set(CONTENT_COLS)
        if unknown:
            raise ValueError(f"not content fields: {sorted(unknown)}")
        sets = [f"{col} = ?" for col in content]
        sql = (
            f"UPDATE notifications SET {', '.join(sets)}, version = ?, updated_at = ?, pending = 1"
            f" WHERE id = ? AND user_id = ? AND COALESCE(version, 1) = ? AND {LIVE} RETURNING *"
        )
        params = (
            *(_encode(col, value) for col, value in content.items()),
            version + 1, encode_time(now), notification_id, user_id, version, live_since(),
        )
        return await self._write(lambda conn: _first(conn.execute(sql, params)))

    async def clear_pending_at(self, items: list[tuple[str, int]]) -> None:
        by_version: dict[int, list[str]] = {}
        for notification_id, version in items:
            by_version.setdefault(version, []).append(notification_id)

        def clear(conn: sqlite3.Connection) -> None:
            for version, ids in by_version.items():
                for start in range(0, len(ids), CLEAR_CHUNK):
                    chunk = ids[start : start + CLEAR_CHUNK]
                    marks = ", ".join("?" * len(chunk))
                    conn.execute(
                        "UPDATE notifications SET pending = 0"
                        f" WHERE COALESCE(version, 1) = ? AND id IN ({marks})", (version, *chunk),
                    )

        if by_version:
            await self._write(clear)
