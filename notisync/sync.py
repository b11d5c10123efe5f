"""The notification use cases: ingest one, act on one, read them back.

REST and WebSocket handlers both call these, so a notification posted over
either path is validated, stored and fanned out identically.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import uuid
from typing import Any

from redis.exceptions import RedisError

from notisync import protocol
from notisync.delivery import Delivery
from notisync.devices import DeviceService
from notisync.errors import ApiError, BadRequest, NotFound, Unavailable
from notisync.recipients import DeviceList, Recipients
from notisync.runtime.metrics import hooks
from notisync.views import notification_view, sync_view
from store.documents import DocumentStore, NotificationQuery, Record, utcnow
from store.streams import EpochMismatch, StaleDevices, Streams

log = logging.getLogger(__name__)

EXPIRY = dt.timedelta(days=7)
_FLAGS = {"read": {"is_read": True}, "dismissed": {"is_dismissed": True}, "clicked": {"is_read": True}}
# Device lists that change under a fan-out this often in a row mean churn
# far beyond any real user; the caller gets a 503 and retries.
FANOUT_TRIES = 5


class NotificationService:
    def __init__(
        self, store: DocumentStore, streams: Streams, delivery: Delivery, devices: DeviceService,
        recipients: Recipients,
    ) -> None:
        self.store = store
        self.streams = streams
        self.delivery = delivery
        self.devices = devices
        self.recipients = recipients

    async def create(
        self, user_id: str, data: dict[str, Any], source_device_id: str | None
    ) -> tuple[Record, bool]:
        """Store a notification and send it to the user's other devices.

        Returns (record, created). A repeat of (source device, source_key)
        returns the first record and sends nothing. If the fan-out cannot
        reach Redis the insert is undone, so a retry starts clean.
        """
        source_device_id = source_device_id or data.get("source_device_id")
        # The cached list says whether the sender is live; the fan-out's
        # version check confirms it before anything is sent.
        targets = await self._device_list(user_id, source_device_id)
        now = utcnow()
        record: Record = {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "source_device_id": source_device_id,
            "source_key": data.get("source_key"),
            "app_name": data["app_name"],
            "title": data.get("title") or "",
            "body": data.get("body") or "",
            "category": data.get("category") or "Personal",
            "priority": data.get("priority", 0),
            "is_read": False,
            "is_dismissed": False,
            "created_at": now,
            "updated_at": now,
            "expires_at": now + EXPIRY,
        }
        stored, created = await self.store.create_notification(record)
        if not created:
            if source_device_id:  # nothing is sent, so ask the store itself (a rare path)
                await self.devices.require_live(user_id, source_device_id)
            hooks.ingested("duplicate")
            return stored, False
        try:
            view = notification_view(stored)
            await self.fan_out(user_id, source_device_id, protocol.NEW_NOTIFICATION, view, targets)
        except (RedisError, OSError) as exc:
            await self.store.delete_notification(user_id, stored["id"])
            raise Unavailable("real-time service unavailable; retry", code="redis_unavailable") from exc
        except ApiError:  # the sender turned out revoked, or the list kept changing
            await self.store.delete_notification(user_id, stored["id"])
            raise
        hooks.ingested("stored")
        return stored, True

    async def act(
        self, user_id: str, notification_id: str, action: str, device_id: str | None
    ) -> Record:
        """Apply read/dismissed/clicked and sync the new state to other devices.

        Flags only turn true, so the same action repeated (a retry after a
        503) or racing actions from several devices converge.
        """
        if device_id:
            await self.devices.require_live(user_id, device_id)
        record = await self.store.set_notification_flags(
            user_id, notification_id, _FLAGS[action], utcnow()
        )
        if record is None:
            raise NotFound("notification not found", code="notification_not_found")
        try:
            await self.fan_out(user_id, device_id, protocol.NOTIFICATION_SYNC, sync_view(record, device_id))
        except (RedisError, OSError) as exc:
            raise Unavailable("stored, but could not sync other devices; retry", code="redis_unavailable") from exc
        return record

    async def get(self, user_id: str, notification_id: str) -> Record:
        record = await self.store.get_notification(user_id, notification_id)
        if record is None:
            raise NotFound("notification not found", code="notification_not_found")
        return record

    async def list(self, user_id: str, params: dict[str, Any]) -> tuple[list[Record], str | None]:
        query = NotificationQuery(
            user_id=user_id,
            limit=params["limit"],
            before=decode_cursor(params["before"]) if params.get("before") else None,
            app_name=params.get("app_name"),
            category=params.get("category"),
            is_read=params.get("is_read"),
            is_dismissed=params.get("is_dismissed"),
            q=params.get("q"),
        )
        # One extra row tells whether another page exists without a count query.
        rows = await self.store.list_notifications(
            NotificationQuery(**{**query.__dict__, "limit": query.limit + 1})
        )
        page = rows[: query.limit]
        more = len(rows) > query.limit
        return page, encode_cursor(page[-1]) if more and page else None

    async def fan_out(
        self, user_id: str, source: str | None, kind: str, data: dict[str, Any],
        targets: DeviceList | None = None,
    ) -> None:
        """Append one encoded frame to every other device's stream, then wake sockets.

        ``targets`` is the cached device list; if Redis says it is stale, it
        is reloaded and the append retried. 404 if ``source`` turns out not
        to be a live device of the user: nothing has been sent then.
        """
        body = protocol.frame(kind, data)
        prefix = '{"n":"%s","k":"m","e":' % self.delivery.node_id
        entry = targets or await self._device_list(user_id, source)
        for _ in range(FANOUT_TRIES):
            devices = [d for d in entry.devices if d != source]
            try:
                appended = await self.streams.append(
                    self.delivery.epoch, user_id, entry.version, devices, prefix, body
                )
            except EpochMismatch:
                await self.delivery.resync_all()  # also empties the device-list cache
            except StaleDevices:
                pass
            else:
                hooks.bus_out(1 if appended else 0)  # the append script published iff it appended
                self.delivery.deliver(user_id, appended, body)
                return
            entry = await self.recipients.load(user_id)
            if source is not None and source not in entry.devices:
                raise NotFound("device not found", code="device_not_found")
        raise Unavailable("the device list keeps changing; retry", code="devices_changing")

    async def _device_list(self, user_id: str, source: str | None) -> DeviceList:
        """The user's device list, which must hold ``source`` if given (404 if it cannot)."""
        entry = await self.recipients.get(user_id)
        if source is not None and source not in entry.devices:
            entry = await self.recipients.load(user_id)  # created after we cached the list?
            if source not in entry.devices:
                raise NotFound("device not found", code="device_not_found")
        return entry


def encode_cursor(record: Record) -> str:
    raw = f"{record['created_at'].isoformat()}|{record['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, record_id = raw.partition("|")
        created = dt.datetime.fromisoformat(stamp)
        if created.tzinfo is None or not record_id:
            raise ValueError(raw)
        # Stores compare in UTC; a stamp like 0001-01-01T00:00+14:00 has no UTC value.
        created.astimezone(dt.timezone.utc)
        return created, record_id
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("invalid cursor", code="invalid_cursor", fields={"before": "Not a valid cursor."}) from None
