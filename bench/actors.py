"""Users and their devices in the load generator, and the per-delivery accounting.

Every delivery is checked individually. A phone records the id of each
notification the server accepted (from the ack). Each receiver records the
ids it got, with latency = receive time - the send time carried in the body.
A scenario's "missing" count is the number of (receiver, accepted id) pairs
never delivered: a missing delivery is a failure, not a rounding error.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable

from bench.fastclient import WSClient


class Device:
    is_phone = False

    def __init__(self, user: "User", device_id: str, port: int) -> None:
        self.user = user
        self.id = device_id
        self.port = port
        self.ws: WSClient | None = None
        self.closed_code: int | None = None
        self.ready: Any = None  # a future while a Socket.IO session is being opened

    def on_closed(self, code: int) -> None:
        self.closed_code = code


class Receiver(Device):
    def __init__(self, user: "User", device_id: str, port: int) -> None:
        super().__init__(user, device_id, port)
        self.got: dict[str, dict[str, float]] = {}   # tag -> notification id -> latency (s)
        self.last: dict[str, float] = {}             # tag -> time of the latest delivery
        self.dups = 0
        self.order: list[str] | None = None          # titles in arrival order, when a scenario wants it

    def delivered(self, nid: str, title: str, body: str, timeline: dict[str, Counter[int]]) -> None:
        now = time.time()
        tag = title[:title.index("#")]
        got = self.got.get(tag)
        if got is None:
            got = self.got[tag] = {}
        if nid in got:
            self.dups += 1  # allowed by the SPEC around reconnects; counted, not failed
            return
        got[nid] = now - float(body)
        self.last[tag] = now
        if self.order is not None:
            self.order.append(title)
        bucket = timeline.get(tag)
        if bucket is None:
            bucket = timeline[tag] = Counter()
        bucket[int(now)] += 1


class Phone(Device):
    """Device 0 of a user: posts notifications and tracks which ones the server accepted."""

    is_phone = True

    def __init__(self, user: "User", device_id: str, port: int) -> None:
        super().__init__(user, device_id, port)
        self.sent: dict[str, dict[str, float]] = {}        # tag -> notification id -> send time
        self.pending: dict[str, tuple[str, float]] = {}    # frame id -> (tag, send time)
        self.ack_latency: dict[str, list[float]] = {}
        self.errors: dict[str, Counter[str]] = {}
        self.echoes = 0  # our own notifications sent back to us (SPEC: never)
        self.on_answer: Callable[["Phone", str], None] | None = None  # closed loops send again from here

    def track(self, frame_id: str, tag: str, sent_at: float) -> None:
        self.pending[frame_id] = (tag, sent_at)

    def answered(self, frame_id: str | None, nid: str | None, error: str | None) -> None:
        entry = self.pending.pop(frame_id, None) if frame_id is not None else None
        if entry is None:
            self.count_error("?", error or "unmatched_ack")
            return
        tag, sent_at = entry
        if error is not None or not nid:
            self.count_error(tag, error or "ack_without_id")
        else:
            self.accept(tag, nid, sent_at)
        if self.on_answer is not None:
            self.on_answer(self, tag)

    def accept(self, tag: str, nid: str, sent_at: float) -> None:
        self.sent.setdefault(tag, {})[nid] = sent_at
        self.ack_latency.setdefault(tag, []).append(time.time() - sent_at)

    def count_error(self, tag: str, code: str) -> None:
        self.errors.setdefault(tag, Counter())[code] += 1

    def pending_for(self, tag: str) -> int:
        return sum(1 for t, _ in self.pending.values() if t == tag)


class User:
    def __init__(self, index: int, key: str) -> None:
        self.index = index
        self.key = key
        self.token = ""
        self.phone: Phone | None = None
        self.receivers: list[Receiver] = []

    @property
    def devices(self) -> list[Device]:
        return [self.phone, *self.receivers] if self.phone else list(self.receivers)


def account(users: list[User], tag: str) -> dict[str, Any]:
    """sent / expected / received / missing / unexpected, and the latencies, for one scenario tag."""
    sent = expected = received = missing = unexpected = 0
    latencies: list[float] = []
    for user in users:
        accepted = user.phone.sent.get(tag, {}) if user.phone else {}
        sent += len(accepted)
        for rcv in user.receivers:
            got = rcv.got.get(tag, {})
            expected += len(accepted)
            hits = sum(1 for nid in got if nid in accepted)
            received += hits
            missing += len(accepted) - hits
            unexpected += len(got) - hits
            latencies.extend(got.values())
    return {"sent": sent, "expected": expected, "received": received, "missing": missing,
            "unexpected": unexpected, "latencies": latencies}
