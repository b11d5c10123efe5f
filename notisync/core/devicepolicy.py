"""Device preferences (stored, validated above) and how they shape each device's stream.

Preferences ride with the per-node device-list cache (``delivery/recipients.py``):
a change writes the store, then bumps the user's device-list version, so
the next fan-out anywhere finds its cached list stale inside the fan-out
script, reloads list and preferences together, and applies the new ones;
no fan-out ever uses preferences older than the script's own check, and
none costs a store read while nothing changes.

``shape_new`` and ``shape_sync`` are what the fan-out applies to the list:
who gets a notification (the rules' route, blocked apps), who gets it
silently (quiet hours at this moment, muted apps), and who gets a
dismissal's ``notification_sync`` (``sync_dismissals``).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from notisync.core import clock
from notisync.core.devices import DeviceService
from notisync.core.preferences import view
from notisync.core.rules import routed_to
from notisync.delivery.fanout import Shape
from notisync.delivery.recipients import DeviceList
from store.documents import DocumentStore, Record
from store.streams import Streams


class PreferenceService:
    def __init__(self, store: DocumentStore, devices: DeviceService, streams: Streams) -> None:
        self.store = store
        self.devices = devices
        self.streams = streams

    async def get(self, user_id: str, device_id: str) -> dict[str, Any]:
        await self.devices.require_live(user_id, device_id)
        return view((await self.store.get_preferences(user_id)).get(device_id))

    async def update(self, user_id: str, device_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """A partial update: the fields given replace the stored ones (atomically, in the store)."""
        await self.devices.require_live(user_id, device_id)
        stored = await self.store.update_preferences(user_id, device_id, data)
        await self.streams.bump_device_version(user_id)  # every node's cached list (and prefs) is now stale
        return view(stored)


def _fold(text: str) -> str:
    return text.casefold()


def shape_new(record: Record, now: dt.datetime | None = None) -> Shape:
    """Recipients of a new notification, and those that get it silently."""
    app = _fold(record["app_name"])
    route = record.get("route")
    all_silent = bool(record.get("silent"))
    at = now or clock.now()

    def shape(entry: DeviceList, devices: list[str]) -> tuple[list[str], frozenset[str]]:
        out: list[str] = []
        quiet: set[str] = set()
        for device in devices:
            if route and not routed_to(route, device, entry.types.get(device)):
                continue
            policy = entry.policies.get(device)
            if policy is not None and policy.blocks(app):
                continue
            out.append(device)
            if not all_silent and policy is not None and policy.silences(app, at):
                quiet.add(device)
        return out, frozenset(quiet)

    return shape


def shape_sync(record: Record, action: str) -> Shape:
    """Recipients of a ``notification_sync``: the devices the notification reached
    (by today's preferences), less those that opted out of dismissals made elsewhere."""
    new = shape_new(record)

    def shape(entry: DeviceList, devices: list[str]) -> tuple[list[str], frozenset[str]]:
        reached, _ = new(entry, devices)
        if action == "dismissed":
            reached = [d for d in reached if (p := entry.policies.get(d)) is None or p.sync_dismissals]
        return reached, frozenset()

    return shape


def reach(entry: DeviceList, record: Record, source: str | None) -> list[str]:
    """The devices a notification would reach now (for the rules' dry run)."""
    devices, _ = shape_new(record)(entry, [d for d in entry.devices if d != source])
    return devices
