"""Benchmark clients: one phone and several receivers per user, over Tornado's own clients.

Every delivery is checked individually. The phone records the id of each
notification the server accepted (from the WS ack or the REST 201). Each
receiver records the ids it got, and a scenario's "missing" count is the
number of (receiver, accepted id) pairs that were never delivered.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClosedError, websocket_connect

PASSWORD = "bench-password-1"
# The server allows 50 frames/s per socket with a burst of 200. We keep each
# phone below that so the benchmark never measures the rate limiter.
SAFE_WS_RATE = 45.0
HTTP_TIMEOUT = 15.0


# -- small helpers -------------------------------------------------------------
def summarize(values: list[float], scale: float = 1000.0) -> dict[str, Any]:
    """Nearest-rank percentiles, scaled to ms by default."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    n = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] * scale, 3)

    return {
        "n": n, "mean": round(sum(ordered) / n * scale, 3), "p50": rank(0.50), "p90": rank(0.90),
        "p99": rank(0.99), "p99_9": rank(0.999), "max": round(ordered[-1] * scale, 3),
    }


async def http(base: str, method: str, path: str, body: Any = None, token: str | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    data = json.dumps(body) if body is not None else (b"" if method in ("POST", "PUT") else None)
    req = HTTPRequest(base + path, method=method, body=data, headers=hdrs,
                      request_timeout=HTTP_TIMEOUT, connect_timeout=HTTP_TIMEOUT)
    resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    try:
        parsed = json.loads(resp.body) if resp.body else None
    except ValueError:
        parsed = resp.body[:200].decode(errors="replace")
    return resp.code, parsed


def error_code(status: int, body: Any) -> str:
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    return f"http_{status}:{code or 'no_code'}"


# -- devices -------------------------------------------------------------------
class Device:
    """One WebSocket of one device. Frames are handled in a callback, not a read loop, to keep per-frame cost low."""

    def __init__(self, user: "User", device_id: str) -> None:
        self.user = user
        self.device_id = device_id
        self.ws: Any = None
        self.closed_code: int | None = None
        self.frames: Counter[str] = Counter()  # frame type -> count

    async def connect(self, ws_base: str) -> None:
        url = f"{ws_base}/ws?token={self.user.token}&device_id={self.device_id}&last_id=0"
        self.ws = await websocket_connect(url, on_message_callback=self._on_raw, connect_timeout=HTTP_TIMEOUT)

    def _on_raw(self, message: str | bytes | None) -> None:
        if message is None:
            self.closed_code = self.ws.close_code if self.ws is not None else -1
            return
        frame = json.loads(message)
        kind = frame.get("type", "?")
        self.frames[kind] += 1
        self.on_frame(kind, frame)

    def on_frame(self, kind: str, frame: dict[str, Any]) -> None:  # overridden
        pass

    def close(self) -> None:
        if self.ws is not None and self.closed_code is None:
            self.ws.close()


class Phone(Device):
    """Device 0 of a user (type mobile). It posts notifications and tracks which ones the server accepted."""

    def __init__(self, user: "User", device_id: str) -> None:
        super().__init__(user, device_id)
        self.sent: dict[str, dict[str, float]] = {}          # tag -> notification id -> send time
        self.pending: dict[str, tuple[str, float]] = {}      # WS frame id -> (tag, send time)
        self.ack_latency: dict[str, list[float]] = {}        # tag -> seconds from send to ack/201
        self.errors: dict[str, Counter[str]] = {}            # tag -> error code -> count
        self.echoes = 0   # our own notifications sent back to us (SPEC: must never happen)
        self.tag = ""     # current scenario; error frames without an id are charged to it
        self.slots: asyncio.Semaphore | None = None  # saturation window, released on ack/error

    def send_ws(self, tag: str, title: str) -> None:
        now = time.time()
        frame = {"type": "new_notification", "id": title,
                 "data": {"app_name": "Bench", "title": title, "body": repr(now)}}
        self.pending[title] = (tag, now)
        try:
            self.ws.write_message(json.dumps(frame)).add_done_callback(_consume)
        except WebSocketClosedError:
            self._resolve(title, None, "socket_closed")

    async def send_rest(self, base: str, tag: str, title: str) -> None:
        now = time.time()
        body = {"app_name": "Bench", "title": title, "body": repr(now)}
        try:
            status, reply = await http(base, "POST", "/api/v1/notifications", body, self.user.token,
                                       {"X-Device-ID": self.device_id})
        except Exception as exc:  # connection refused, timeout: a failed send, not a crash
            self._count_error(tag, type(exc).__name__)
            return
        if status == 201:
            self._accept(tag, reply["id"], now)
        else:
            self._count_error(tag, error_code(status, reply))

    def on_frame(self, kind: str, frame: dict[str, Any]) -> None:
        data = frame.get("data") or {}
        if kind == "ack":
            self._resolve(data.get("id"), data.get("notification_id"), None)
        elif kind == "error":
            self._resolve(data.get("id"), None, data.get("code", "error"))
        elif kind == "new_notification":
            self.echoes += 1

    def _resolve(self, frame_id: str | None, notification_id: str | None, error: str | None) -> None:
        entry = self.pending.pop(frame_id, None) if frame_id else None
        tag = entry[0] if entry else self.tag
        if error is not None or entry is None or notification_id is None:
            self._count_error(tag, error or "unmatched_ack")
        else:
            self._accept(tag, notification_id, entry[1])
        if entry is not None and self.slots is not None:
            self.slots.release()

    def _accept(self, tag: str, notification_id: str, sent_at: float) -> None:
        self.sent.setdefault(tag, {})[notification_id] = sent_at
        self.ack_latency.setdefault(tag, []).append(time.time() - sent_at)

    def _count_error(self, tag: str, code: str) -> None:
        self.errors.setdefault(tag, Counter())[code] += 1

    def pending_for(self, tag: str) -> int:
        return sum(1 for t, _ in self.pending.values() if t == tag)


class Receiver(Device):
    """A web/desktop device. It computes latency = now - send time in the body."""

    def __init__(self, user: "User", device_id: str, timeline: dict[str, Counter[int]]) -> None:
        super().__init__(user, device_id)
        self.got: dict[str, dict[str, float]] = {}   # tag -> notification id -> latency (s)
        self.last: dict[str, float] = {}             # tag -> time of the latest delivery
        self.dups = 0
        self.timeline = timeline                     # tag -> whole second -> deliveries (shared)

    def on_frame(self, kind: str, frame: dict[str, Any]) -> None:
        if kind != "new_notification":
            return
        now = time.time()
        data = frame["data"]
        tag = data["title"].partition("#")[0]
        got = self.got.setdefault(tag, {})
        if data["id"] in got:
            self.dups += 1  # allowed by the SPEC around reconnects; counted, not failed
            return
        got[data["id"]] = now - float(data["body"])
        self.last[tag] = now
        self.timeline.setdefault(tag, Counter())[int(now)] += 1


class User:
    def __init__(self, index: int) -> None:
        self.index = index
        self.token = ""
        self.phone: Phone | None = None
        self.receivers: list[Receiver] = []

    @property
    def devices(self) -> list[Device]:
        return [self.phone, *self.receivers] if self.phone else list(self.receivers)


def _consume(future: "asyncio.Future[Any]") -> None:
    # A write to a socket that closed under us fails its future. The close
    # is recorded by the on_message callback, so the error here is only
    # read to stop asyncio from logging it.
    if not future.cancelled():
        future.exception()
