"""SQLite: device API keys, counts and bulk actions (SPEC "Phones, bulk actions, counts").

A mixin of ``SQLiteStore`` (store/sqlite.py), which provides ``_write``,
``_one`` and ``_many``; kept apart so neither file outgrows a reading.
"""
from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any, Awaitable, Callable, TypeVar

from store.documents import FLAGS, Record, Selection
from store.sqlite_rows import LIVE, _decode_row, encode_time, live_since

T = TypeVar("T")

API_KEY_COLS = ("id", "user_id", "device_id", "name", "key_hash", "created_at", "last_used_at")
# Ids per statement in a bulk action (SQLite's variable limit is 32766).
IDS_CHUNK = 500


class PhoneRows:
    _write: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]
    _one: Callable[[str, tuple[Any, ...]], Awaitable[Record | None]]
    _many: Callable[[str, tuple[Any, ...]], Awaitable[list[Record]]]

    # -- API keys ------------------------------------------------------------------
    async def create_api_key(self, key: Record) -> None:
        values = tuple(
            encode_time(key.get(c)) if c in ("created_at", "last_used_at") else key.get(c) for c in API_KEY_COLS
        )
        sql = f"INSERT INTO api_keys ({', '.join(API_KEY_COLS)}) VALUES ({', '.join('?' * len(API_KEY_COLS))})"
        await self._write(lambda conn: conn.execute(sql, values))

    async def get_api_key(self, key_hash: str) -> Record | None:
        return await self._one("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,))

    async def list_api_keys(self, user_id: str, device_id: str) -> list[Record]:
        sql = "SELECT * FROM api_keys WHERE user_id = ? AND device_id = ? ORDER BY created_at, id"
        return await self._many(sql, (user_id, device_id))

    async def delete_api_key(self, user_id: str, device_id: str, key_id: str) -> bool:
        sql = "DELETE FROM api_keys WHERE id = ? AND user_id = ? AND device_id = ?"
        return await self._write(lambda conn: conn.execute(sql, (key_id, user_id, device_id)).rowcount == 1)

    async def touch_api_key(self, key_id: str, now: dt.datetime) -> None:
        sql = "UPDATE api_keys SET last_used_at = ? WHERE id = ?"
        await self._write(lambda conn: conn.execute(sql, (encode_time(now), key_id)))

    # -- counts and bulk actions -------------------------------------------------------
    async def count_notifications(self, user_id: str) -> Record:
        sql = (
            "SELECT category, app_name, COUNT(*) AS total, SUM(is_read = 0) AS unread FROM notifications"
            f" WHERE user_id = ? AND is_dismissed = 0 AND {LIVE} GROUP BY category, app_name"
        )
        return summarise(await self._many(sql, (user_id, live_since())))

    async def set_flags_where(self, selection: Selection, flags: Record, now: dt.datetime) -> list[Record]:
        names = [name for name, on in flags.items() if on]
        if set(flags) - FLAGS or not names:
            raise ValueError(f"bad notification flags {sorted(flags)}")
        sets = ", ".join(f"{name} = 1" for name in names)
        where = ["user_id = ?", LIVE, "(" + " OR ".join(f"{name} = 0" for name in names) + ")"]
        params: list[Any] = [selection.user_id, live_since()]
        for col in ("app_name", "category", "source_key", "source_device_id"):
            if getattr(selection, col) is not None:
                where.append(f"{col} = ?")
                params.append(getattr(selection, col))
        if selection.before is not None:
            where.append("created_at < ?")
            params.append(encode_time(selection.before))
        base = f"UPDATE notifications SET {sets}, updated_at = ? WHERE {' AND '.join(where)}"
        head = (encode_time(now), *params)
        ids = list(selection.ids) if selection.ids is not None else None

        def update(conn: sqlite3.Connection) -> list[Record]:
            if ids is None:
                return list(map(_decode_row, conn.execute(base + " RETURNING *", head).fetchall()))
            out: list[Record] = []
            for i in range(0, len(ids), IDS_CHUNK):
                chunk = ids[i : i + IDS_CHUNK]
                sql = f"{base} AND id IN ({', '.join('?' * len(chunk))}) RETURNING *"
                out += map(_decode_row, conn.execute(sql, (*head, *chunk)).fetchall())
            return out

        if ids == []:
            return []
        return await self._write(update)


def summarise(groups: list[Record]) -> Record:
    """Rows of (category, app_name, total, unread) as the store's counts record."""
    by_category: dict[str, int] = {}
    by_app: dict[str, int] = {}
    total = unread = 0
    for row in groups:
        total += row["total"]
        unread += row["unread"] or 0
        by_category[row["category"]] = by_category.get(row["category"], 0) + row["total"]
        by_app[row["app_name"]] = by_app.get(row["app_name"], 0) + (row["unread"] or 0)
    return {"total": total, "unread": unread, "by_category": by_category, "by_app": by_app}
