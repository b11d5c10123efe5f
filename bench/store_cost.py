#!/usr/bin/env python3
"""CPU per stored notification through the SQLite store, one write at a time (below saturation).

    PYTHONPATH=/path/to/other/checkout python bench/store_cost.py   # the store of that checkout
    python bench/store_cost.py --n 3000 --rounds 5

At 500 notifications/s a group-commit batch nearly always holds one write,
so this is the store's cost per notification on the independent case's
path: the hop to the store's thread and back, the transaction, the insert
and its indexes. Process CPU (every thread) per write, median of rounds.
Run it for two checkouts alternately to compare (the machine is shared).

The search index is brought up to date in batches (store/sqlite_search.py),
partly after the timed loop; the second figure adds the catch-up of what is
left, so it is the whole cost of storing and indexing a notification.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from store.sqlite import SQLiteStore  # noqa: E402


def note(i: int) -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    return {"id": str(uuid.uuid4()), "user_id": f"u{i % 200}", "source_device_id": f"d{i % 200}",
            "source_key": None, "app_name": "Bench", "title": f"bench {i}", "body": "x" * 40,
            "category": "general", "priority": "normal", "actions": [], "version": 1, "is_read": False,
            "is_dismissed": False, "created_at": now, "updated_at": now, "expires_at": now + dt.timedelta(days=7),
            "pending": True, "silent": False, "route": None}


async def one_round(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        store = SQLiteStore(os.path.join(d, "s.sqlite3"))
        await store.open()
        try:
            for i in range(200):  # warm up
                await store.create_notification(note(i))
            notes = [note(i) for i in range(n)]
            index = getattr(store, "_index", None)  # absent in checkouts that index on insert
            if index is not None:
                await index.catch_up_all()
            t0 = time.process_time()
            for rec in notes:
                await store.create_notification(rec)
            t1 = time.process_time()
            if index is not None:
                await index.catch_up_all()
            t2 = time.process_time()
            return (t1 - t0) / n * 1e6, (t2 - t0) / n * 1e6
        finally:
            await store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    import store
    pairs = [asyncio.run(one_round(args.n)) for _ in range(args.rounds)]
    writes, indexed = [p[0] for p in pairs], [p[1] for p in pairs]
    print(f"{os.path.dirname(os.path.dirname(store.__file__))}: {statistics.median(writes):.0f} µs CPU per write, "
          f"{statistics.median(indexed):.0f} µs with the search index caught up "
          f"(rounds: {', '.join(f'{w:.0f}/{i:.0f}' for w, i in pairs)}; load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
