"""How the load generator talks to each server: socket path, frames out, frames in.

NotiSync and the two bare peers speak the SPEC's JSON envelopes; the
python-socketio peer speaks Engine.IO 4 / Socket.IO 5 packets over a plain
websocket. Each dialect turns an incoming payload into one small tuple:

    ("n", id, title, body)   a delivered notification
    ("a", frame_id, notification_id)   the sender's acknowledgement
    ("e", frame_id or None, code)      an error answer
    ("ping", reply_payload)  a protocol-level ping the client must answer
    ("ready",)               the server accepted the session (Socket.IO only)
    None                     anything else (pong, device_status, ...)
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson


class SpecDialect:
    """NotiSync's /ws protocol (token + device id), or the bare peers' (user + device id, no auth)."""

    needs_ready = False

    def __init__(self, authenticated: bool) -> None:
        self.authenticated = authenticated

    def path(self, user_key: str, token: str, device_id: str, resume: bool = True) -> str:
        if self.authenticated:
            last = "&last_id=0" if resume else ""
            return f"/ws?token={quote(token)}&device_id={quote(device_id)}{last}"
        return f"/ws?user={quote(user_key)}&device_id={quote(device_id)}"

    def hello(self, user_key: str, device_id: str) -> bytes | None:
        return None

    def notification(self, frame_id: str | None, data: dict[str, Any]) -> bytes:
        if frame_id is None:  # no client id: the server answers nothing (bench/independent.py)
            return orjson.dumps({"type": "new_notification", "data": data})
        return orjson.dumps({"type": "new_notification", "id": frame_id, "data": data})

    def parse(self, payload: bytes) -> tuple[Any, ...] | None:
        frame = orjson.loads(payload)
        kind = frame.get("type")
        data = frame.get("data") or {}
        if kind == "new_notification":
            return ("n", data["id"], data["title"], data["body"])
        if kind == "ack":
            return ("a", data.get("id"), data.get("notification_id"))
        if kind == "error":
            return ("e", data.get("id"), data.get("code", "error"))
        return None


class SocketIODialect:
    """Raw Engine.IO 4 packets: `0` open, `2`/`3` ping/pong, `40` connect, `42` event, `43` ack."""

    needs_ready = True

    def path(self, user_key: str, token: str, device_id: str, resume: bool = True) -> str:
        return "/socket.io/?EIO=4&transport=websocket"

    def hello(self, user_key: str, device_id: str) -> bytes | None:
        return b"40" + orjson.dumps({"user": user_key, "device_id": device_id})

    def notification(self, frame_id: str | None, data: dict[str, Any]) -> bytes:
        # 42<ack id>[event, data]: Socket.IO answers with 43<ack id>[return value];
        # without an ack id it answers nothing.
        return b"42" + (frame_id or "").encode() + orjson.dumps(["new_notification", data])

    def parse(self, payload: bytes) -> tuple[Any, ...] | None:
        if payload[:2] == b"42":
            event, data = orjson.loads(payload[2:])[:2]
            if event == "new_notification":
                return ("n", data["id"], data["title"], data["body"])
            return None
        if payload[:2] == b"43":
            bracket = payload.index(b"[")
            reply = orjson.loads(payload[bracket:])
            nid = reply[0].get("notification_id") if reply and isinstance(reply[0], dict) else None
            return ("a", payload[2:bracket].decode(), nid)
        if payload == b"2":
            return ("ping", b"3")
        if payload[:2] == b"40":
            return ("ready",)
        if payload[:2] == b"44":  # connect error
            return ("e", None, "connect_error")
        return None
