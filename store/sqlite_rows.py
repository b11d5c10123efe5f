"""SQLite rows <-> records: column lists, value encoding, query filters.

Pure functions shared by the store's statements (store/sqlite.py); none of
them touches a connection except through the cursor it is handed.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any

from store.documents import NotificationQuery, Record, utcnow

USER_COLS = ("id", "email", "password_hash", "created_at")
SESSION_COLS = ("id", "user_id", "device_id", "created_at", "ended_at")
DEVICE_COLS = (
    "id", "user_id", "device_name", "device_type", "push_token",
    "last_seen", "created_at", "revoked_at",
)
NOTIFICATION_COLS = (
    "id", "user_id", "source_device_id", "source_key", "app_name", "title",
    "body", "category", "priority", "is_read", "is_dismissed", "created_at",
    "updated_at", "expires_at", "pending", "silent", "route", "actions", "version",
)
# Content a repeat post may change in place (update_notification_content).
CONTENT_COLS = ("title", "body", "category", "priority", "actions")
# Columns added with updates in place: NULL in older rows and in records
# written without them, and then left out of the record read back (a record
# reads back exactly as it was written).
OPTIONAL_COLS = frozenset({"actions", "version"})
DATETIME_COLS = frozenset(
    {"created_at", "updated_at", "expires_at", "last_seen", "revoked_at", "used_at", "ended_at", "last_used_at"}
)
BOOL_COLS = frozenset({"is_read", "is_dismissed", "pending", "silent"})
JSON_COLS = frozenset({"actions", "route"})
LIKE_ESCAPE = "\\"
SEARCH_MIN_CHARS = 3  # the trigram index needs at least one trigram
UNIQUE_ERRORS = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


def encode_time(value: dt.datetime | None) -> str | None:
    """A fixed-width UTC string with milliseconds: sorts as text in time order."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("datetimes given to the store must be timezone-aware")
    utc = value if value.tzinfo is dt.timezone.utc else value.astimezone(dt.timezone.utc)
    return utc.isoformat(timespec="milliseconds")  # ends in +00:00; 2x faster than strftime


def decode_time(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards in ``text`` matched literally."""
    for ch in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(ch, LIKE_ESCAPE + ch)
    return f"%{text}%"


def fts_phrase(text: str) -> str:
    """``text`` as one FTS5 string: double quotes doubled, nothing else special."""
    return '"' + text.replace('"', '""') + '"'


def _insert_sql(table: str, cols: tuple[str, ...], conflict: str) -> str:
    marks = ", ".join("?" * len(cols))
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) ON CONFLICT ({conflict}) DO NOTHING"


def _encode(col: str, value: Any) -> Any:
    if col in DATETIME_COLS:
        return encode_time(value)
    if col in BOOL_COLS:
        return int(bool(value))
    if col in JSON_COLS and value is not None:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


def _column_encoder(col: str) -> Any:
    """``_encode`` for one column, decided once: None where the value goes in as it is."""
    if col in DATETIME_COLS:
        return encode_time
    if col in BOOL_COLS:
        return lambda value: int(bool(value))
    if col in JSON_COLS:
        return lambda value: None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return None


# The notification insert is on every post's path: its statement and its
# per-column encoders are built once (a profile had the row preparation at
# ~35 µs of Python per insert, as much as SQLite's own work for the row).
NOTIFICATION_INSERT = _insert_sql("notifications", (*NOTIFICATION_COLS, "dedupe_key"), "user_id, dedupe_key")
_NOTIFICATION_ENCODERS = tuple((col, _column_encoder(col)) for col in NOTIFICATION_COLS)
_FLAG_COLS = ("is_read", "is_dismissed", "pending")


def notification_values(notification: Record, key: str | None) -> tuple[Record, tuple[Any, ...]]:
    """The record as stored (flags as bools) and the parameters of ``NOTIFICATION_INSERT``."""
    get = notification.get
    row = {col: get(col) for col in NOTIFICATION_COLS}
    for col in _FLAG_COLS:
        row[col] = bool(row[col])
    values = [row[col] if enc is None else enc(row[col]) for col, enc in _NOTIFICATION_ENCODERS]
    values.append(key)
    return row, tuple(values)


def _first(cur: sqlite3.Cursor) -> Record | None:
    # fetchall() steps the statement to its end, so nothing is still running
    # when the transaction commits.
    rows = cur.fetchall()
    return _decode_row(rows[0]) if rows else None


def _decode_row(row: sqlite3.Row) -> Record:
    out: Record = {}
    for col in row.keys():
        value = row[col]
        if col in DATETIME_COLS:
            value = decode_time(value)
        elif col in BOOL_COLS:
            value = bool(value)
        elif col in OPTIONAL_COLS and value is None:
            continue
        elif col in JSON_COLS:
            value = None if value is None else json.loads(value)
        out[col] = value
    out.pop("dedupe_key", None)
    return out


def _py_lower(text: str | None) -> str | None:
    # SQLite's own LIKE and lower() fold ASCII only; Python folds all of
    # Unicode, matching MongoDB's case-insensitive regex.
    return None if text is None else text.lower()


# A notification past expires_at is gone from every answer at once, whatever
# the purge schedule (SPEC "Limits"); the purge only reclaims the space.
LIVE = "(expires_at IS NULL OR expires_at > ?)"


def live_since() -> str:
    """The parameter of ``LIVE``: now."""
    return encode_time(utcnow())  # type: ignore[return-value]


def _notification_filter(query: NotificationQuery) -> tuple[list[str], list[Any]]:
    where = ["user_id = ?", LIVE]
    params: list[Any] = [query.user_id, live_since()]
    if query.before is not None:
        created, last_id = query.before
        stamp = encode_time(created)
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
        params += [stamp, stamp, last_id]
    for col in ("app_name", "category", "is_read", "is_dismissed"):
        value = getattr(query, col)
        if value is not None:
            where.append(f"{col} = ?")
            params.append(_encode(col, value))
    if query.q and len(query.q) >= SEARCH_MIN_CHARS:
        # Through the trigram index (store/sqlite_schema.py): the query is one
        # quoted FTS5 phrase, so nothing in it is FTS syntax, and it matches
        # as a substring of one column, case-insensitively.
        where.append("rowid IN (SELECT rowid FROM notifications_fts WHERE notifications_fts MATCH ?)")
        params.append(fts_phrase(query.q))
    elif query.q:
        # Shorter than a trigram: no index can answer it. The API refuses
        # such a q (400); the store still answers it, by a scan.
        pattern = like_pattern(query.q.lower())
        where.append(
            "(" + " OR ".join(
                f"py_lower({col}) LIKE ? ESCAPE '{LIKE_ESCAPE}'"
                for col in ("title", "body", "app_name")
            ) + ")"
        )
        params += [pattern] * 3
    return where, params
