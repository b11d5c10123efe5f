"""Device use cases: register (idempotent by client id), list with presence, rename, revoke."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from notisync.core.sessions import SessionService
from notisync.delivery.recipients import Recipients
from notisync.delivery.replay import Delivery
from notisync.errors import Conflict, NotFound
from notisync.views import device_view
from store.documents import DocumentStore, Record, utcnow
from store.errors import DuplicateKey
from store.presence import Presence
from store.streams import Streams

log = logging.getLogger(__name__)

SEEN_SECONDS = 60.0  # a device's last_seen from REST use is written at most this often
SEEN_LIMIT = 10_000  # throttle entries kept per process before the expired ones are swept


class DeviceService:
    def __init__(
        self, store: DocumentStore, presence: Presence, streams: Streams, delivery: Delivery,
        recipients: Recipients, sessions: SessionService, max_devices: int = 0,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.max_devices = max_devices  # live devices per user; 0: no limit
        self.presence = presence
        self.streams = streams
        self.delivery = delivery
        self.recipients = recipients
        self._seen: dict[str, float] = {}  # device id -> monotonic time its next write is due
        self._writes: set[asyncio.Task[None]] = set()  # kept so the loop does not drop them

    async def create(self, user_id: str, data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        # The user's stream epoch exists before any device does, and no device
        # is dated before it (another node's clock may run ahead): only a
        # device older than its user's epoch is told its stream was reset.
        epoch = datetime.fromtimestamp(int(await self.streams.ensure_epoch(user_id)) / 1000, timezone.utc)
        now = max(utcnow(), epoch)
        device: Record = {
            "id": data.get("id") or str(uuid.uuid4()),
            "user_id": user_id,
            "device_name": data["device_name"],
            "device_type": data["device_type"],
            "push_token": data.get("push_token"),
            "last_seen": None,
            "created_at": now,
            "revoked_at": None,
        }
        if self.max_devices:
            await self._check_room(user_id, device["id"])
        try:
            stored, created = await self.store.create_device(device)
        except DuplicateKey:
            raise Conflict("device id is already in use", code="device_id_taken") from None
        if stored.get("revoked_at"):
            raise Conflict("this device id was revoked and cannot be reused", code="device_revoked")
        # Every node's cached device list of this user is now stale. A repeat
        # bumps again, in case the first attempt failed between the two steps.
        await self.streams.bump_device_version(user_id)
        self.recipients.forget(user_id)
        if created:
            await self._announce(user_id, stored["id"], "added")
        return device_view(stored, await self._is_online(user_id, stored["id"])), created

    async def _check_room(self, user_id: str, device_id: str) -> None:
        """409 if the user already has ``max_devices`` live devices and this is a new one.

        Counted before the insert, so two concurrent creates can pass one over
        the limit; the bound still holds to within the user's concurrency.
        """
        live = await self.store.list_devices(user_id)
        if len(live) >= self.max_devices and all(d["id"] != device_id for d in live):
            raise Conflict(f"a user may have at most {self.max_devices} devices; revoke one first",
                           code="too_many_devices")

    async def list(self, user_id: str) -> list[dict[str, Any]]:
        devices = await self.store.list_devices(user_id)
        online = await self.presence.online_devices(user_id)
        return [device_view(d, d["id"] in online) for d in devices]

    async def get(self, user_id: str, device_id: str) -> dict[str, Any]:
        device = await self.require_live(user_id, device_id)
        return device_view(device, await self._is_online(user_id, device_id))

    async def update(self, user_id: str, device_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        device = await self.store.update_device(user_id, device_id, fields)
        if device is None:
            raise NotFound("device not found", code="device_not_found")
        await self._announce(user_id, device_id, "updated")
        return device_view(device, await self._is_online(user_id, device_id))

    async def revoke(self, user_id: str, device_id: str) -> None:
        """Refuse the id from now on, end its sessions, drop its stream, close its sockets everywhere."""
        if not await self.store.revoke_device(user_id, device_id, utcnow()):
            raise NotFound("device not found", code="device_not_found")
        # Bump before dropping the stream: once the bump is visible no node
        # appends to this device, so the drop is final.
        await self.streams.bump_device_version(user_id)
        self.recipients.forget(user_id)
        await self.streams.drop(user_id, device_id)
        await self.presence.drop_device(user_id, device_id)
        # Sockets first, so they are told "device revoked" rather than "session ended".
        await self.delivery.revoke_device(user_id, device_id)
        await self.sessions.end_device(user_id, device_id)
        await self._announce(user_id, device_id, "revoked")

    async def _announce(self, user_id: str, device_id: str, change: str) -> None:
        """device_changed to the user's open sockets; the change itself is already stored."""
        try:
            await self.delivery.liveness.publish_change(user_id, device_id, change)
        except Exception as exc:  # a dashboard missing one hint is not worth failing the request
            log.warning("could not announce device %s %s: %r", device_id, change, exc)

    async def forget_user(self, user_id: str, device_ids: list[str]) -> None:
        """After an account was deleted from the store: drop its streams, presence and counter from Redis."""
        self.recipients.forget(user_id)
        for device_id in device_ids:
            await self.streams.drop(user_id, device_id)
            await self.delivery.revoke_device(user_id, device_id)  # any socket still open
        await self.presence.drop_user(user_id)
        await self.streams.drop_user(user_id)

    async def require_live(self, user_id: str, device_id: str) -> Record:
        device = await self.store.get_device(device_id)
        if device is None or device["user_id"] != user_id or device.get("revoked_at"):
            raise NotFound("device not found", code="device_not_found")
        return device

    async def touch(self, user_id: str, device_id: str) -> None:
        await self.store.update_device(user_id, device_id, {"last_seen": utcnow()})

    def seen(self, user_id: str, device_id: str) -> None:
        """Record REST use as the device's last_seen, at most once a minute, off the request path.

        A phone that only posts over REST never opens a socket, so without
        this it would show no "last seen" at all. The write runs as its own
        task (the response does not wait for it) and a failure only logs.
        """
        now = time.monotonic()
        if self._seen.get(device_id, 0.0) > now:
            return
        if len(self._seen) >= SEEN_LIMIT:
            self._seen = {k: v for k, v in self._seen.items() if v > now}
        self._seen[device_id] = now + SEEN_SECONDS
        task = asyncio.create_task(self._write_seen(user_id, device_id))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_seen(self, user_id: str, device_id: str) -> None:
        try:
            await self.store.update_device(user_id, device_id, {"last_seen": utcnow()})
        except Exception as exc:
            log.warning("could not record last_seen of device %s: %r", device_id, exc)

    async def _is_online(self, user_id: str, device_id: str) -> bool:
        return device_id in await self.presence.online_devices(user_id)
