"""Counts and bulk actions over a user's notifications (SPEC "Phones, bulk actions, counts").

A bulk action is many single actions (``core/notifications.py`` ``act``)
done at once: the store flips the flags in one statement and returns the
notifications it changed, then each of those reaches the other devices as
the same ``notification_sync`` a single action sends. The appends are
issued together, so the script batcher (``store/script_batch.py``) sends
them to Redis as a few pipelines rather than one round trip each.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from redis.exceptions import RedisError

from notisync import protocol
from notisync.core.devices import DeviceService
from notisync.delivery.fanout import FanOut
from notisync.errors import Unavailable
from notisync.views import sync_view
from store.documents import DocumentStore, Selection, utcnow

CATEGORIES = ("Work", "Personal", "Junk")
FLAGS = {"read": {"is_read": True}, "dismissed": {"is_dismissed": True}}
SEND_CHUNK = 128  # appends in flight at once (one script-batcher pipeline's worth)


class BulkService:
    def __init__(self, store: DocumentStore, fan_out: FanOut, devices: DeviceService) -> None:
        self.store = store
        self.fan_out = fan_out
        self.devices = devices

    async def counts(self, user_id: str) -> dict[str, Any]:
        """Totals over the live, undismissed notifications; ``unread``: neither read nor dismissed."""
        raw = await self.store.count_notifications(user_id)
        by_app = sorted(raw["by_app"].items(), key=lambda item: (-item[1], item[0]))
        return {
            "total": raw["total"],
            "unread": raw["unread"],
            "by_category": {c: raw["by_category"].get(c, 0) for c in CATEGORIES},
            "by_app": [{"app_name": app, "unread": unread} for app, unread in by_app],
        }

    async def act(self, user_id: str, action: str, data: dict[str, Any], device_id: str | None) -> int:
        """Apply read/dismissed to the selected notifications; how many changed.

        Only notifications this call changed are synced: one already read
        (by another device, or an earlier try) was synced when it changed.
        """
        if device_id:
            await self.devices.require_live(user_id, device_id)
        selection = Selection(
            user_id=user_id,
            ids=tuple(data["ids"]) if data.get("ids") is not None else None,
            app_name=data.get("app_name"),
            category=data.get("category"),
            before=_utc(data.get("before")),
            source_key=data.get("source_key"),
            # A phone's source_key is its own: with an acting device, only that device's.
            source_device_id=device_id if data.get("source_key") is not None else None,
        )
        changed = await self.store.set_flags_where(selection, FLAGS[action], utcnow())
        if not changed:
            return 0
        try:
            targets = await self.fan_out.device_list(user_id, None)
            for i in range(0, len(changed), SEND_CHUNK):
                await asyncio.gather(*(
                    self.fan_out.send(user_id, device_id, protocol.NOTIFICATION_SYNC, sync_view(r, device_id), targets)
                    for r in changed[i : i + SEND_CHUNK]
                ))
        except (RedisError, OSError) as exc:
            raise Unavailable(
                "stored, but could not sync every other device; their next refetch shows the change",
                code="redis_unavailable",
            ) from exc
        return len(changed)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.astimezone(dt.timezone.utc)
