"""The WebSocket envelope: ``{"type", "data", "timestamp"[, "id"]}``.

Frames are encoded once; a stream frame's per-device ``id`` is spliced in
front of the already-encoded body, so fanning a message out to many devices
never re-encodes it.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson

# client -> server
PING = "ping"
NOTIFICATION_ACTION = "notification_action"
NEW_NOTIFICATION = "new_notification"
REAUTH = "reauth"  # {token}: keep the socket past its token's expiry
STREAM_ACK = "stream_ack"  # {last_id}: the client has handled its stream up to there
INVOKE_ACTION = "invoke_action"  # {notification_id, action_id, reply_text?}
# server -> client
PONG = "pong"
ACK = "ack"
ERROR = "error"
NOTIFICATION_SYNC = "notification_sync"
DEVICE_STATUS = "device_status"
DEVICE_CHANGED = "device_changed"  # {device_id, change: added|updated|revoked}: refetch GET /devices
SYNC_REQUIRED = "sync_required"
NOTIFICATION_UPDATED = "notification_updated"  # the whole notification, after an update in place
ACTION_INVOKED = "action_invoked"  # {notification_id, action_id, reply_text?, device_id}: to the source device

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
    if value.tzinfo is not dt.timezone.utc:
        value = value.astimezone(dt.timezone.utc)
    # %-formatting: about 3x faster than strftime, and a message carries several.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
        value.year, value.month, value.day, value.hour, value.minute, value.second,
        value.microsecond // 1000,
    )


def now_iso() -> str:
    return iso(dt.datetime.now(dt.timezone.utc))  # type: ignore[return-value]


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. orjson writes the same bytes as json.dumps(separators=(",", ":"),
    ensure_ascii=False) for everything we send, about 20x faster."""
    try:
        return orjson.dumps(value)
    except TypeError:  # what orjson refuses (non-string keys, ints past 64 bits): json's answer
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: str | bytes) -> Any:
    """Parse a client frame; raises ValueError if it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # json accepts a few spellings orjson refuses (lone surrogate escapes,
        # NaN): parse those as before, so such frames get the same answers.
        try:
            return json.loads(data)
        except RecursionError:  # deeply nested: a bad frame, not a server error
            raise ValueError("JSON nested too deeply") from None


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
