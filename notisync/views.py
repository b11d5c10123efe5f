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
    }


def sync_view(n: Record, source_device: str | None) -> dict[str, Any]:
    return {
        "notification_id": n["id"],
        "is_read": n["is_read"],
        "is_dismissed": n["is_dismissed"],
        "source_device": source_device,
    }


def api_key_view(k: Record) -> dict[str, Any]:
    """A device API key as listed: never the key, which only its creation shows."""
    return {
        "id": k["id"],
        "name": k.get("name"),
        "created_at": iso(k["created_at"]),
        "last_used_at": iso(k.get("last_used_at")),
    }
