"""The WebSocket envelope: ``{"type", "data", "timestamp"[, "id"]}``.

Frames are encoded once; a stream frame's per-device ``id`` is spliced in
front of the already-encoded body, so fanning a message out to many devices
never re-encodes it.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

# client -> server
PING = "ping"
NOTIFICATION_ACTION = "notification_action"
NEW_NOTIFICATION = "new_notification"
# server -> client
PONG = "pong"
ACK = "ack"
ERROR = "error"
NOTIFICATION_SYNC = "notification_sync"
DEVICE_STATUS = "device_status"
SYNC_REQUIRED = "sync_required"

# close codes beyond RFC 6455's generic ones
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_TRY_AGAIN = 1013


def iso(value: dt.datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a trailing Z."""
    if value is None:
        return None
    value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return iso(dt.datetime.now(dt.timezone.utc))  # type: ignore[return-value]


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def frame(frame_type: str, data: Any) -> bytes:
    """A complete frame (no stream id)."""
    return dumps({"type": frame_type, "data": data, "timestamp": now_iso()})


def with_id(body: bytes, envelope_id: str) -> bytes:
    """Splice ``"id"`` into an encoded envelope: ``{"id":"…",<rest of body>``."""
    return b'{"id":"' + envelope_id.encode() + b'",' + body[1:]


def error_frame(code: str, message: str, frame_id: str | None = None) -> bytes:
    data: dict[str, Any] = {"code": code, "message": message}
    if frame_id is not None:
        data["id"] = frame_id
    return frame(ERROR, data)
