"""WAL checkpoints off the write path, on a connection and thread of their own.

By default SQLite checkpoints inside the COMMIT that takes the WAL past
1000 pages: that one commit copies the WAL into the database file and
fsyncs it, and every write batched behind it waits. Measured under the
benchmark: such commits took 12-30 ms at 100 notifications/s and up to
313 ms at saturation, which is where the delivery-latency tail came from.

Here a PASSIVE checkpoint (it never waits for, nor blocks, the writer) runs
every ``interval`` seconds on its own connection. The writer keeps SQLite's
automatic checkpoint only as a backstop, at a far larger WAL
(``WRITER_AUTOCHECKPOINT`` pages), should this thread ever fall behind.
"""
from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between checkpoints
WRITER_AUTOCHECKPOINT = 20_000  # pages (about 80 MB of WAL): the backstop


class Checkpointer:
    def __init__(self, path: str, interval: float | None = None) -> None:
        self.path = path
        self.interval = INTERVAL if interval is None else interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last checkpoint; the writer must be closed already."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            while not self._stop.wait(self.interval):
                self._checkpoint(conn, "PASSIVE")
            # Writer gone: fold the whole WAL in and truncate it to zero bytes.
            self._checkpoint(conn, "TRUNCATE")
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection, mode: str) -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:  # the next round tries again; the backstop bounds the WAL
            log.warning("sqlite checkpoint failed: %s", exc)
