"""The SQLite file's tables and indexes, and the steps that bring an older file up to date."""
from __future__ import annotations

import sqlite3

from store.sqlite_search import install

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL,
    expires_at TEXT NOT NULL, used_at TEXT
);
CREATE INDEX IF NOT EXISTS refresh_tokens_user ON refresh_tokens (user_id);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, device_name TEXT, device_type TEXT,
    push_token TEXT, last_seen TEXT, created_at TEXT NOT NULL, revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS devices_user ON devices (user_id);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, device_id TEXT,
    created_at TEXT NOT NULL, ended_at TEXT
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
-- Device API keys: only a hash of each key; id is also the key's session id.
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, device_id TEXT NOT NULL, name TEXT,
    key_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, last_used_at TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_device ON api_keys (user_id, device_id);
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL,
    source_device_id TEXT, source_key TEXT, dedupe_key TEXT,
    app_name TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
    category TEXT, priority INTEGER NOT NULL,
    is_read INTEGER NOT NULL, is_dismissed INTEGER NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT, expires_at TEXT,
    -- 1 from the insert until every recipient's stream holds it (see
    -- notisync/ingest.py); the sweeper completes rows left at 1.
    pending INTEGER NOT NULL DEFAULT 0,
    -- NULLs are distinct in SQLite, so rows without a source_key never clash.
    UNIQUE (user_id, dedupe_key)
);
CREATE INDEX IF NOT EXISTS notifications_page
    ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS notifications_expiry ON notifications (expires_at);
-- Rules, device preferences, digest schedules (store/sqlite_hub.py): the
-- free-form part of each is one JSON document.
CREATE TABLE IF NOT EXISTS rules (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, position INTEGER NOT NULL,
    created_at TEXT NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rules_user ON rules (user_id, position);
CREATE TABLE IF NOT EXISTS device_prefs (
    device_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS device_prefs_user ON device_prefs (user_id);
CREATE TABLE IF NOT EXISTS digest_schedules (
    user_id TEXT PRIMARY KEY, enabled INTEGER NOT NULL, doc TEXT NOT NULL
);
"""
# After MIGRATIONS: an older file gains the column before the index needs it.
PENDING_INDEX = """
CREATE INDEX IF NOT EXISTS notifications_pending
    ON notifications (created_at) WHERE pending = 1;
"""
# Search (GET /notifications?q=): an FTS5 trigram index, indexed in batches
# rather than by each insert (store/sqlite_search.py).
# Columns added since the first release: (table, column, definition).
MIGRATIONS = (
    ("notifications", "pending", "INTEGER NOT NULL DEFAULT 0"),
    # What the rules decided for its fan-out, so a retry or the sweeper
    # sends it exactly where the first attempt would have (notisync/core/rules.py).
    ("notifications", "silent", "INTEGER NOT NULL DEFAULT 0"),
    ("notifications", "route", "TEXT"),
    # Updates in place: the actions (JSON) and the content version (NULL = 1).
    ("notifications", "actions", "TEXT"),
    ("notifications", "version", "INTEGER"),
)


def migrate(conn: sqlite3.Connection) -> None:
    for table, column, definition in MIGRATIONS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    conn.executescript(PENDING_INDEX)
    install(conn)
