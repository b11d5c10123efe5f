"""The SQLite search index, brought up to date in batches instead of on every insert.

Search (GET /notifications?q=) goes through an FTS5 trigram index over
title, body and app name (external content: the index keeps only trigrams
keyed by the notification's rowid). Indexing a row inside its own insert
transaction cost ~40 µs of FTS5 work plus the flush of a new index segment
at every commit, the largest single cost of an insert. Indexed 32 or more
rows per transaction, the same rows cost ~3-5 µs each (raw SQLite loop).

So inserts no longer index. One number, ``upto`` in
``notifications_fts_mark``, says how far the index goes:

    every row with rowid <= upto is in the index, with its current text;
    no row with rowid > upto is in it.

``catch_up`` indexes the rows above the mark, in rowid order, and moves the
mark, in one transaction: a crash leaves both as they were, never an index
ahead of or behind its mark. The triggers keep the invariant for everything
else, whichever connection or process writes: a delete or change of text
below the mark is applied to the index at once (above it there is nothing to
correct: catch-up will read the row as it is then), and an insert at or
below the mark is indexed at once — SQLite reuses the top rowid after the
newest rows are deleted (no AUTOINCREMENT), so a new row can land below it.

A search first catches the whole index up (``LazyIndex.catch_up_all``), so
it sees every notification stored before it began; between searches the
store catches up every ``BATCH`` inserts and on a timer (rows any process
stored), so the backlog, and the time a search may spend catching up, stays
small.

The triggers keep the names they had when inserts indexed eagerly: a node
of that version opening a migrated file finds them present and leaves them
alone (its CREATE ... IF NOT EXISTS), so it never indexes a row twice.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)

# Inserts (by this process) that start a catch-up; ~3-5 µs a row at 32+ a transaction.
BATCH = 64
# Seconds after which fewer than BATCH unindexed inserts are indexed anyway.
INTERVAL = 1.0
# Rows per catch-up transaction: bounds how long it holds the store thread
# (and other writes behind it) to a few ms.
MAX_ROWS = 512

TABLE = """
CREATE VIRTUAL TABLE IF NOT EXISTS notifications_fts USING fts5(
    title, body, app_name, content='notifications', content_rowid='rowid', tokenize='trigram',
    columnsize=0
)"""
# columnsize=0: no per-row token counts, which only ranking (bm25) reads and
# search does not rank (a file made before keeps its table: same results).
MARK = "CREATE TABLE notifications_fts_mark (id INTEGER PRIMARY KEY CHECK (id = 0), upto INTEGER NOT NULL)"
_BELOW = "(SELECT upto FROM notifications_fts_mark WHERE id = 0)"
TRIGGERS = (
    f"""CREATE TRIGGER notifications_fts_insert AFTER INSERT ON notifications
    WHEN new.rowid <= {_BELOW} BEGIN
        INSERT INTO notifications_fts (rowid, title, body, app_name)
            VALUES (new.rowid, new.title, new.body, new.app_name);
    END""",
    f"""CREATE TRIGGER notifications_fts_delete AFTER DELETE ON notifications
    WHEN old.rowid <= {_BELOW} BEGIN
        INSERT INTO notifications_fts (notifications_fts, rowid, title, body, app_name)
            VALUES ('delete', old.rowid, old.title, old.body, old.app_name);
    END""",
    # An update never changes a notification's rowid, so old.rowid is new.rowid.
    f"""CREATE TRIGGER notifications_fts_update AFTER UPDATE OF title, body, app_name ON notifications
    WHEN old.rowid <= {_BELOW} BEGIN
        INSERT INTO notifications_fts (notifications_fts, rowid, title, body, app_name)
            VALUES ('delete', old.rowid, old.title, old.body, old.app_name);
        INSERT INTO notifications_fts (rowid, title, body, app_name)
            VALUES (new.rowid, new.title, new.body, new.app_name);
    END""",
)
TRIGGER_NAMES = ("notifications_fts_insert", "notifications_fts_delete", "notifications_fts_update")


def _exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def install(conn: sqlite3.Connection) -> None:
    """Bring the file to the lazy index (once): from no index, or from the eager triggers.

    One IMMEDIATE transaction, so two nodes opening the same file at once
    neither both install nor see half of it. Statement by statement:
    ``executescript`` would commit the transaction first.
    """
    if _exists(conn, "notifications_fts_mark"):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _exists(conn, "notifications_fts_mark"):
            had_index = _exists(conn, "notifications_fts")
            conn.execute(TABLE)
            for name in TRIGGER_NAMES:
                conn.execute(f"DROP TRIGGER IF EXISTS {name}")
            if not had_index:
                # A file from before search: index the rows it holds, once.
                conn.execute("INSERT INTO notifications_fts (notifications_fts) VALUES ('rebuild')")
            # Either way every row is indexed now (the eager triggers kept it so).
            conn.execute(MARK)
            conn.execute("INSERT INTO notifications_fts_mark (id, upto)"
                         " SELECT 0, COALESCE(MAX(rowid), 0) FROM notifications")
            for sql in TRIGGERS:
                conn.execute(sql)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def catch_up(conn: sqlite3.Connection, limit: int = MAX_ROWS) -> int:
    """Inside a write transaction: index up to ``limit`` rows above the mark; how many it did."""
    upto = conn.execute(f"SELECT {_BELOW}").fetchone()[0]
    top = conn.execute(
        "SELECT MAX(rowid), COUNT(*) FROM (SELECT rowid FROM notifications WHERE rowid > ? ORDER BY rowid LIMIT ?)",
        (upto, limit),
    ).fetchone()
    if not top[1]:
        return 0
    conn.execute(
        "INSERT INTO notifications_fts (rowid, title, body, app_name)"
        " SELECT rowid, title, body, app_name FROM notifications WHERE rowid > ? AND rowid <= ?",
        (upto, top[0]),
    )
    conn.execute("UPDATE notifications_fts_mark SET upto = ? WHERE id = 0", (top[0],))
    return int(top[1])


def behind(conn: sqlite3.Connection) -> bool:
    """Whether any row is above the mark (a plain read: no write lock, in WAL mode)."""
    return conn.execute(f"SELECT EXISTS (SELECT 1 FROM notifications WHERE rowid > {_BELOW})").fetchone()[0] == 1


Writer = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]


class LazyIndex:
    """When to catch up, on the event loop; each catch-up is a write through the store's group writer.

    ``read`` runs a function on the store's connection outside any
    transaction: the timer's check that there is something to index.
    """

    def __init__(self, write: Writer, read: Writer, batch: int = BATCH, interval: float = INTERVAL,
                 max_rows: int = MAX_ROWS) -> None:
        self._write = write
        self._read = read
        self.batch, self.interval, self.max_rows = batch, interval, max_rows
        self._unindexed = 0  # inserts by this process since its last catch-up began
        self._running: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._timer = asyncio.create_task(self._tick(), name="sqlite-search-index")

    async def stop(self) -> None:
        """Stop the timer, then index what is left (a clean shutdown leaves no backlog)."""
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)
        await self.catch_up_soon()  # a failure is logged: the next open catches up

    def added(self) -> None:
        """One more row stored by this process; a full batch starts a catch-up now."""
        self._unindexed += 1
        if self._unindexed >= self.batch:
            self._kick()

    async def catch_up_all(self) -> None:
        """Index every row stored so far (before a search: it must see all of them)."""
        # Rows stored meanwhile are counted again for the next background round.
        self._unindexed = 0
        step = functools.partial(catch_up, limit=self.max_rows)
        try:
            while await self._write(step) == self.max_rows:
                pass
        except BaseException:
            self._unindexed = max(self._unindexed, 1)  # so the timer tries again
            raise

    async def catch_up_soon(self) -> None:
        """Catch up now, or as soon as the timer retries if that fails (nothing waits on it)."""
        self._kick()
        if self._running is not None:
            await self._running

    def _kick(self) -> None:
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._background())

    async def _background(self) -> None:
        try:
            await self.catch_up_all()
        except Exception as exc:  # e.g. the file locked by another process too long: retried on the timer
            log.warning("search index catch-up failed (retried): %s", exc)

    async def _tick(self) -> None:
        # Every interval, whether or not this process inserted: another process
        # sharing the file may have (a --workers sibling, or a node of the
        # previous version, which inserts without indexing and searches the
        # index as it is). A round first looks, read-only: an idle node takes
        # no write lock (which a sibling's insert would wait for) and writes
        # nothing to the WAL.
        while True:
            await asyncio.sleep(self.interval)
            try:
                due = self._unindexed > 0 or await self._read(behind)
            except Exception as exc:  # e.g. the store closing: the next round looks again
                log.debug("search index check failed: %r", exc)
                continue
            if due:
                self._kick()
