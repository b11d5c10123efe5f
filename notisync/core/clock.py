"""The time rules, quiet hours and the digest schedule see.

Production reads the system clock. Tests set ``NOTISYNC_TEST_CLOCK`` to a
file holding an ISO-8601 instant: every call then reads that file, so a
test moves a running node's clock (into and out of quiet hours, across a
digest's scheduled minute) without waiting. Delivery, tokens and expiry
keep the real clock.
"""
from __future__ import annotations

import datetime as dt
import os

CLOCK_ENV = "NOTISYNC_TEST_CLOCK"


def now() -> dt.datetime:
    path = os.environ.get(CLOCK_ENV)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read().strip()
            if text:
                value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
                return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        except (OSError, ValueError):
            pass  # a file being rewritten: fall back to the real time for this call
    return dt.datetime.now(dt.timezone.utc)
