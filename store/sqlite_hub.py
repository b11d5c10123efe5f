"""SQLite side of ``store/hub_store.py``: rules, device preferences, digest schedules.

A mixin of ``SQLiteStore``: it uses the store's ``_write`` / ``_many`` /
``_one`` plumbing. Each record keeps its free-form part (match, action,
preferences, schedule) as one JSON text column; only what is queried on
is a column of its own.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any

from store.hub_store import RULE_FIELDS, HubStore, Record
from store.sqlite_rows import decode_time, encode_time


def _rule(row: sqlite3.Row) -> Record:
    doc = json.loads(row["doc"])
    return {
        "id": row["id"], "user_id": row["user_id"], "position": row["position"],
        "created_at": decode_time(row["created_at"]), **doc,
    }


def _rule_doc(rule: Record) -> str:
    return json.dumps({k: rule[k] for k in ("name", "enabled", "match", "action")}, separators=(",", ":"))


class SQLiteHubMixin(HubStore):
    async def _write(self, fn: Any) -> Any: ...  # provided by SQLiteStore
    async def _run(self, fn: Any) -> Any: ...

    # -- rules ----------------------------------------------------------------
    async def list_rules(self, user_id: str) -> list[Record]:
        sql = "SELECT * FROM rules WHERE user_id = ? ORDER BY position, created_at, id"
        return await self._run(lambda conn: [_rule(r) for r in conn.execute(sql, (user_id,))])

    async def create_rule(self, rule: Record, limit: int) -> Record | None:
        def create(conn: sqlite3.Connection) -> Record | None:
            # Inside the write transaction: the count and the insert are atomic
            # (BEGIN IMMEDIATE holds the file's write lock, across processes too).
            count, top = conn.execute(
                "SELECT COUNT(*), MAX(position) FROM rules WHERE user_id = ?", (rule["user_id"],)
            ).fetchone()
            if count >= limit:
                return None
            row = dict(rule)
            if row.get("position") is None:
                row["position"] = 0 if top is None else top + 1
            conn.execute(
                "INSERT INTO rules (id, user_id, position, created_at, doc) VALUES (?, ?, ?, ?, ?)",
                (row["id"], row["user_id"], row["position"], encode_time(row["created_at"]), _rule_doc(row)),
            )
            return row

        return await self._write(create)

    async def update_rule(self, user_id: str, rule_id: str, fields: Record) -> Record | None:
        unknown = set(fields) - set(RULE_FIELDS)
        if unknown:
            raise ValueError(f"cannot update rule fields {sorted(unknown)}")

        def update(conn: sqlite3.Connection) -> Record | None:
            rows = conn.execute("SELECT * FROM rules WHERE id = ? AND user_id = ?", (rule_id, user_id)).fetchall()
            if not rows:
                return None
            rule = {**_rule(rows[0]), **fields}
            conn.execute(
                "UPDATE rules SET position = ?, doc = ? WHERE id = ? AND user_id = ?",
                (rule["position"], _rule_doc(rule), rule_id, user_id),
            )
            return rule

        return await self._write(update)

    async def delete_rule(self, user_id: str, rule_id: str) -> bool:
        sql = "DELETE FROM rules WHERE id = ? AND user_id = ?"
        return await self._write(lambda conn: conn.execute(sql, (rule_id, user_id)).rowcount == 1)

    # -- device preferences ---------------------------------------------------
    async def get_preferences(self, user_id: str) -> dict[str, Record]:
        sql = "SELECT device_id, doc FROM device_prefs WHERE user_id = ?"
        return await self._run(lambda conn: {r[0]: json.loads(r[1]) for r in conn.execute(sql, (user_id,))})

    async def update_preferences(self, user_id: str, device_id: str, fields: Record) -> Record:
        select = "SELECT doc FROM device_prefs WHERE device_id = ? AND user_id = ?"
        upsert = (
            "INSERT INTO device_prefs (device_id, user_id, doc) VALUES (?, ?, ?)"
            " ON CONFLICT (device_id) DO UPDATE SET doc = excluded.doc WHERE user_id = excluded.user_id"
        )

        def merge(conn: Any) -> Record:  # one write transaction on the store thread: read, merge, write
            row = conn.execute(select, (device_id, user_id)).fetchone()
            prefs = {**(json.loads(row[0]) if row else {}), **fields}
            conn.execute(upsert, (device_id, user_id, json.dumps(prefs, separators=(",", ":"))))
            return prefs

        return await self._write(merge)

    # -- digest schedules -----------------------------------------------------
    async def get_digest_schedule(self, user_id: str) -> Record | None:
        sql = "SELECT doc FROM digest_schedules WHERE user_id = ?"
        rows = await self._run(lambda conn: conn.execute(sql, (user_id,)).fetchall())
        return json.loads(rows[0][0]) if rows else None

    async def set_digest_schedule(self, user_id: str, schedule: Record) -> None:
        sql = (
            "INSERT INTO digest_schedules (user_id, enabled, doc) VALUES (?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET enabled = excluded.enabled, doc = excluded.doc"
        )
        params = (user_id, int(bool(schedule.get("enabled"))), json.dumps(schedule, separators=(",", ":")))
        await self._write(lambda conn: conn.execute(sql, params))

    async def list_digest_schedules(self) -> list[Record]:
        sql = "SELECT user_id, doc FROM digest_schedules WHERE enabled = 1"
        rows = await self._run(lambda conn: conn.execute(sql).fetchall())
        return [{**json.loads(doc), "user_id": user_id} for user_id, doc in rows]
