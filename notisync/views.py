"""The JSON shapes of records, as REST answers and WebSocket frames carry them."""
from __future__ import annotations

from typing import Any

from notisync.protocol import iso
from store.documents import Record


def user_view(user: Record) -> dict[str, Any]:
    return {"id": user["id"], "email": user["email"], "created_at": iso(user["created_at"])}


def device_view(device: Record, online: bool) -> dict[str, Any]:
    return {
        "id": device["id"],
        "device_name": device["device_name"],
        "device_type": device["device_type"],
        "status": "online" if online else "offline",
        "last_seen": iso(device.get("last_seen")),
        "created_at": iso(device["created_at"]),
    }


def notification_view(n: Record) -> dict[str, Any]:
    return {
        "id": n["id"],
        "app_name": n["app_name"],
        "title": n["title"],
        "body": n["body"],
        "category": n["category"],
        "priority": n["priority"],
        "is_read": n["is_read"],
        "is_dismissed": n["is_dismissed"],
        "source_device_id": n["source_device_id"],
        "created_at": iso(n["created_at"]),
        "updated_at": iso(n.get("updated_at")),
        "expires_at": iso(n["expires_at"]),
        "actions": n.get("actions") or [],
        "version": n.get("version") or 1,
    }


def sync_view(n: Record, source_device: str | None) -> dict[str, Any]:
    return {
        "notification_id": n["id"],
        "is_read": n["is_read"],
        "is_dismissed": n["is_dismissed"],
        "source_device": source_device,
    }


def invoked_view(notification_id: str, action_id: str, reply_text: str | None, device_id: str | None) -> dict[str, Any]:
    """``action_invoked``'s data (also the 202 answer of an invoke)."""
    data: dict[str, Any] = {"notification_id": notification_id, "action_id": action_id, "device_id": device_id}
    if reply_text is not None:
        data["reply_text"] = reply_text
    return data
