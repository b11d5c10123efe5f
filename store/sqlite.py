"""SQLite document store: the embedded default.

Every statement runs on one dedicated worker thread that owns the only
connection, so the event loop never blocks on disk and the connection is
never shared between threads. WAL mode plus a busy timeout let several
server processes use one file: writes that read then modify run inside
``BEGIN IMMEDIATE`` (the write lock is taken up front, so a second process
waits instead of failing on lock upgrade), and uniqueness is left to UNIQUE
constraints so races between processes resolve inside SQLite itself.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
from typing import Any, Callable, TypeVar

from store.errors import DuplicateKey
from store.documents import DEVICE_UPDATABLE, FLAGS, DocumentStore, NotificationQuery, Record, dedupe_key
from store.sqlite_batch import GroupWriter
from store.sqlite_hub import SQLiteHubMixin
from store.sqlite_content import ContentUpdates
from store.sqlite_phone import PhoneRows
from store.sqlite_schema import SCHEMA, migrate
from store.sqlite_search import LazyIndex
from store.sqlite_checkpoint import WRITER_AUTOCHECKPOINT, Checkpointer
from store.sqlite_worker import Worker
from store.sqlite_rows import (
    USER_COLS,
    SESSION_COLS,
    DEVICE_COLS,
    OPTIONAL_COLS,
    UNIQUE_ERRORS,
    encode_time,
    _insert_sql,
    _encode,
    _first,
    _decode_row,
    _py_lower,
    LIVE,
    _notification_filter,
    live_since,
    SEARCH_MIN_CHARS,
    NOTIFICATION_INSERT,
    notification_values,
)

T = TypeVar("T")

# Ids per UPDATE when clearing pending rows (SQLite's variable limit is 32766).
CLEAR_CHUNK = 500


class SQLiteStore(SQLiteHubMixin, ContentUpdates, PhoneRows, DocumentStore):
    backend = "sqlite"

    def __init__(self, path: str, linger: float = 0.0) -> None:
        self.path = path
        self._linger = linger  # seconds a write batch may wait for company under load (store/batching.py)
        self._worker: Worker | None = None
        self._conn: sqlite3.Connection | None = None
        self._writer: GroupWriter | None = None
        self._checkpointer: Checkpointer | None = None
        self._index: LazyIndex | None = None

    # -- plumbing -----------------------------------------------------------
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._worker is None or self._conn is None:
            raise RuntimeError("SQLiteStore is not open")
        return await self._worker.call(fn, self._conn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in an IMMEDIATE transaction (shared with concurrent writes,
        each in its own savepoint); unique violations become DuplicateKey."""
        if self._writer is None:
            raise RuntimeError("SQLiteStore is not open")
        try:
            return await self._writer.write(fn)
        except sqlite3.IntegrityError as exc:
            # NOT NULL and CHECK failures are caller bugs, not duplicates.
            if exc.sqlite_errorname not in UNIQUE_ERRORS:
                raise
            raise DuplicateKey(str(exc)) from exc

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions, we issue BEGIN ourselves.
        conn = sqlite3.connect(
            self.path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        # Checkpoints run on their own thread (store/sqlite_checkpoint.py).
        conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT}")
        conn.create_function("py_lower", 1, _py_lower, deterministic=True)
        conn.executescript(SCHEMA)
        migrate(conn)
        return conn

    # -- life cycle -----------------------------------------------------------
    async def open(self) -> None:
        if self._conn is not None:
            return
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._worker = Worker("sqlite-store")
        try:
            self._conn = await self._worker.call(self._connect)
        except BaseException:
            self._worker.stop()
            self._worker = None
            raise
        self._writer = GroupWriter(self._run, linger=self._linger)
        self._checkpointer = Checkpointer(self.path)
        self._checkpointer.start()
        self._index = LazyIndex(self._write, self._run)
        # Rows a crashed process stored but never indexed: index them now,
        # not at the first search (which would catch up all the same).
        await self._index.catch_up_soon()
        self._index.start()

    async def close(self) -> None:
        if self._worker is None:
            return
        if self._index is not None:
            await self._index.stop()
            self._index = None
        if self._writer is not None:
            await self._writer.drain()
            self._writer = None
        if self._conn is not None:
            await self._run(lambda conn: conn.close())
        self._conn = None
        self._worker.stop()
        self._worker = None
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
            self._checkpointer = None

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def _one(self, sql: str, params: tuple[Any, ...]) -> Record | None:
        return await self._run(lambda conn: _first(conn.execute(sql, params)))

    async def _many(self, sql: str, params: tuple[Any, ...]) -> list[Record]:
        def fetch(conn: sqlite3.Connection) -> list[Record]:
            return list(map(_decode_row, conn.execute(sql, params)))

        return await self._run(fetch)

    # -- users ------------------------------------------------------------------
    async def create_user(self, user: Record) -> Record:
        row = {col: user.get(col) for col in USER_COLS}
        row["email"] = str(user["email"]).lower()
        values = tuple(_encode(c, row[c]) for c in USER_COLS)
        sql = "INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)"
        await self._write(lambda conn: conn.execute(sql, values))
        return row

    async def get_user(self, user_id: str) -> Record | None:
        return await self._one("SELECT * FROM users WHERE id = ?", (user_id,))

    async def get_user_by_email(self, email: str) -> Record | None:
        return await self._one("SELECT * FROM users WHERE email = ?", (email.lower(),))

    # -- refresh tokens -----------------------------------------------------------
    async def add_refresh_token(
        self, token_hash: str, user_id: str, expires_at: dt.datetime
    ) -> None:
        sql = "INSERT INTO refresh_tokens (token_hash, user_id, expires_at) VALUES (?, ?, ?)"
        params = (token_hash, user_id, encode_time(expires_at))
        await self._write(lambda conn: conn.execute(sql, params))

    async def use_refresh_token(self, token_hash: str, now: dt.datetime) -> str:
        stamp = encode_time(now)

        def use(conn: sqlite3.Connection) -> str:
            # The guarded UPDATE is the atomic step: only one caller can
            # flip used_at from NULL, whichever process it runs in.
            cur = conn.execute(
                "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ?"
                " AND used_at IS NULL AND expires_at > ?",
                (stamp, token_hash, stamp),
            )
            if cur.rowcount == 1:
                return "ok"
            row = _first(conn.execute(
                "SELECT expires_at, used_at FROM refresh_tokens WHERE token_hash = ?",
                (token_hash,),
            ))
            # An expired token is "unknown" even if it was also used.
            if row is None or row["expires_at"] <= now:
                return "unknown"
            return "reused"

        return await self._write(use)

    async def revoke_refresh_tokens(self, user_id: str) -> None:
        sql = "DELETE FROM refresh_tokens WHERE user_id = ?"
        await self._write(lambda conn: conn.execute(sql, (user_id,)))

    async def set_password_hash(self, user_id: str, password_hash: str) -> bool:
        sql = "UPDATE users SET password_hash = ? WHERE id = ?"
        return await self._write(lambda conn: conn.execute(sql, (password_hash, user_id)).rowcount == 1)

    async def delete_user(self, user_id: str) -> list[str]:
        def delete(conn: sqlite3.Connection) -> list[str]:
            devices = [row[0] for row in conn.execute("SELECT id FROM devices WHERE user_id = ?", (user_id,))]
            for table in ("notifications", "devices", "refresh_tokens", "sessions", "api_keys", "rules",
                          "device_prefs", "digest_schedules"):
                conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
            return devices

        return await self._write(delete)

    # -- sessions -----------------------------------------------------------------
    async def create_session(self, session: Record) -> None:
        values = tuple(_encode(c, session.get(c)) for c in SESSION_COLS)
        sql = f"INSERT INTO sessions ({', '.join(SESSION_COLS)}) VALUES ({', '.join('?' * len(SESSION_COLS))})"
        await self._write(lambda conn: conn.execute(sql, values))

    async def get_session(self, session_id: str) -> Record | None:
        return await self._one("SELECT * FROM sessions WHERE id = ?", (session_id,))

    async def list_sessions(self, user_id: str) -> list[Record]:
        return await self._many("SELECT * FROM sessions WHERE user_id = ? AND ended_at IS NULL", (user_id,))

    async def end_sessions(self, user_id: str, session_ids: list[str], now: dt.datetime) -> None:
        if not session_ids:
            return
        marks = ", ".join("?" * len(session_ids))
        sql = f"UPDATE sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL AND id IN ({marks})"
        params = (encode_time(now), user_id, *session_ids)
        await self._write(lambda conn: conn.execute(sql, params))

    # -- devices ------------------------------------------------------------------
    async def create_device(self, device: Record) -> tuple[Record, bool]:
        row = {col: device.get(col) for col in DEVICE_COLS}
        values = tuple(_encode(c, row[c]) for c in DEVICE_COLS)
        insert = _insert_sql("devices", DEVICE_COLS, "id")

        def create(conn: sqlite3.Connection) -> tuple[Record | None, bool]:
            if conn.execute(insert, values).rowcount == 1:
                # Columns the record did not carry read back absent, not None.
                return {k: v for k, v in row.items() if v is not None or k not in OPTIONAL_COLS}, True
            return _first(conn.execute("SELECT * FROM devices WHERE id = ?", (row["id"],))), False

        stored, created = await self._write(create)
        if stored is None or stored["user_id"] != row["user_id"]:
            raise DuplicateKey(f"device id {row['id']!r} belongs to another user")
        return stored, created

    async def get_device(self, device_id: str) -> Record | None:
        return await self._one("SELECT * FROM devices WHERE id = ?", (device_id,))

    async def list_devices(self, user_id: str) -> list[Record]:
        sql = (
            "SELECT * FROM devices WHERE user_id = ? AND revoked_at IS NULL"
            " ORDER BY created_at, id"
        )
        return await self._many(sql, (user_id,))

    async def update_device(
        self, user_id: str, device_id: str, fields: Record
    ) -> Record | None:
        unknown = set(fields) - DEVICE_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update device fields {sorted(unknown)}")
        # Column names come from the whitelist above, never from the caller.
        sets = ", ".join(f"{col} = ?" for col in fields) or "id = id"
        values = tuple(_encode(col, v) for col, v in fields.items())
        sql = (
            f"UPDATE devices SET {sets} WHERE id = ? AND user_id = ?"
            " AND revoked_at IS NULL RETURNING *"
        )
        params = (*values, device_id, user_id)
        return await self._write(lambda conn: _first(conn.execute(sql, params)))

    async def revoke_device(
        self, user_id: str, device_id: str, now: dt.datetime
    ) -> bool:
        sql = (
            "UPDATE devices SET revoked_at = ? WHERE id = ? AND user_id = ?"
            " AND revoked_at IS NULL"
        )
        params = (encode_time(now), device_id, user_id)
        return await self._write(lambda conn: conn.execute(sql, params).rowcount == 1)

    # -- notifications ------------------------------------------------------------
    async def create_notification(self, notification: Record) -> tuple[Record, bool]:
        key = dedupe_key(notification.get("source_device_id"), notification.get("source_key"))
        row, values = notification_values(notification, key)
        # Only the dedupe constraint is swallowed; a clashing id still raises.
        insert = NOTIFICATION_INSERT

        def create(conn: sqlite3.Connection) -> tuple[Record | None, bool]:
            if conn.execute(insert, values).rowcount == 1:
                # Columns the record did not carry read back absent, not None.
                return {k: v for k, v in row.items() if v is not None or k not in OPTIONAL_COLS}, True
            existing = conn.execute(
                "SELECT * FROM notifications WHERE user_id = ? AND dedupe_key = ?",
                (row["user_id"], key),
            )
            return _first(existing), False

        stored, created = await self._write(create)
        if stored is None:  # pragma: no cover - the conflict row cannot vanish inside the transaction
            raise DuplicateKey("notification dedupe conflict")
        if created and self._index is not None:
            self._index.added()  # indexed for search in a later batch (store/sqlite_search.py)
        return stored, created

    async def get_notification(
        self, user_id: str, notification_id: str, include_expired: bool = False
    ) -> Record | None:
        if include_expired:
            return await self._one("SELECT * FROM notifications WHERE id = ? AND user_id = ?",
                                   (notification_id, user_id))
        sql = f"SELECT * FROM notifications WHERE id = ? AND user_id = ? AND {LIVE}"
        return await self._one(sql, (notification_id, user_id, live_since()))

    async def delete_notification(self, user_id: str, notification_id: str) -> None:
        sql = "DELETE FROM notifications WHERE id = ? AND user_id = ?"
        await self._write(lambda conn: conn.execute(sql, (notification_id, user_id)))

    async def list_pending(self, before: dt.datetime, limit: int) -> list[Record]:
        sql = (
            "SELECT * FROM notifications WHERE pending = 1 AND created_at < ?"
            " ORDER BY created_at LIMIT ?"
        )
        return await self._many(sql, (encode_time(before), limit))

    async def clear_pending(self, notification_ids: list[str]) -> None:
        chunks = [notification_ids[i : i + CLEAR_CHUNK] for i in range(0, len(notification_ids), CLEAR_CHUNK)]

        def clear(conn: sqlite3.Connection) -> None:
            for chunk in chunks:
                marks = ", ".join("?" * len(chunk))
                conn.execute(f"UPDATE notifications SET pending = 0 WHERE id IN ({marks})", chunk)

        if chunks:
            await self._write(clear)

    async def list_notifications(self, query: NotificationQuery) -> list[Record]:
        if query.q and len(query.q) >= SEARCH_MIN_CHARS and self._index is not None:
            # The index lags the table by up to a batch: catch it up first, so
            # the search sees every notification stored before it began.
            await self._index.catch_up_all()
        where, params = _notification_filter(query)
        sql = (
            f"SELECT * FROM notifications WHERE {' AND '.join(where)}"
            " ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        return await self._many(sql, (*params, max(query.limit, 0)))

    async def set_notification_flags(
        self, user_id: str, notification_id: str, flags: Record, now: dt.datetime
    ) -> Record | None:
        unknown = set(flags) - FLAGS
        if unknown:
            raise ValueError(f"unknown notification flags {sorted(unknown)}")
        # Flags only ever turn on; a False in ``flags`` is simply not applied.
        sets = [f"{name} = 1" for name, on in flags.items() if on]
        sets.append("updated_at = ?")
        sql = (
            f"UPDATE notifications SET {', '.join(sets)} WHERE id = ? AND user_id = ? AND {LIVE}"
            " RETURNING *"
        )
        params = (encode_time(now), notification_id, user_id, live_since())
        return await self._write(lambda conn: _first(conn.execute(sql, params)))

    async def purge_expired(self, now: dt.datetime) -> int:
        stamp = encode_time(now)

        def purge(conn: sqlite3.Connection) -> int:
            removed = conn.execute(
                "DELETE FROM notifications WHERE expires_at <= ?", (stamp,)
            ).rowcount
            # Mirrors MongoDB's TTL index on refresh tokens: expired ones
            # already answer "unknown", so dropping them changes nothing.
            conn.execute("DELETE FROM refresh_tokens WHERE expires_at <= ?", (stamp,))
            return removed

        return await self._write(purge)
