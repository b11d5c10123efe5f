"""The notification use cases: ingest one, act on one, read them back.

REST and WebSocket handlers both call these, so a notification posted over
either path is validated, stored and fanned out identically.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import os
from typing import Any, Awaitable, Callable

from redis.exceptions import RedisError

from notisync import protocol
from notisync.core.devicepolicy import shape_new, shape_sync
from notisync.core.devices import DeviceService
from notisync.core.pending import PendingClears
from notisync.core.rulebook import RuleService
from notisync.core.rules import Decision, RuleSet
from notisync.delivery.fanout import FanOut
from notisync.delivery.recipients import DeviceList
from notisync.errors import BadRequest, Conflict, NotFound, RateLimited, Unavailable
from notisync.hooks import hooks
from notisync.views import invoked_view, notification_view, sync_view
from store.documents import DocumentStore, NotificationQuery, Record, utcnow
from store.ratelimit import retry_after

log = logging.getLogger(__name__)

EXPIRY = dt.timedelta(days=7)
_FLAGS = {"read": {"is_read": True}, "dismissed": {"is_dismissed": True}, "clicked": {"is_read": True}}
# A pending row younger than this is most likely still being fanned out by
# the node that stored it (the Redis timeout is 5 s): the sweeper leaves it.
SWEEP_GRACE = 10.0
SWEEP_BATCH = 200
NO_RULES = RuleSet()  # a node without a rule service: the built-in category only


class Dropped(Exception):
    """A rule dropped the notification: nothing was stored or sent (the post answers 202)."""

    def __init__(self, rule_id: str | None) -> None:
        super().__init__(rule_id)
        self.rule_id = rule_id


class NotificationService:
    def __init__(
        self, store: DocumentStore, fan_out: FanOut, devices: DeviceService, pending: PendingClears,
        post_limit: Callable[[str], Awaitable[float]] | None = None, rules: RuleService | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        # user id -> seconds to wait (0: allowed); shared by every node (--post-rate).
        self.post_limit = post_limit
        self.fan_out = fan_out
        self.devices = devices
        self.pending = pending

    async def create(
        self, user_id: str, data: dict[str, Any], source_device_id: str | None
    ) -> tuple[Record, bool]:
        """Store a notification and send it to the user's other devices.

        Returns (record, created). The step order is the no-loss argument:

        0. The user's post rate (``--post-rate``, one Redis script shared by
           every node, REST and /ws alike): 429 before anything is stored.
        1. The sender must be a live device of the user: 404 before anything
           is stored. The user's rules (cached, ``core/rulebook.py``) decide
           category, priority, silent and route, or drop it (``Dropped``).
        2. Insert the record with ``pending`` set: the durable promise to fan
           it out. A repeat of (source device, source_key) returns the first
           record instead, and finishes its fan-out if that is still pending.
        3. Fan out: one Redis script appends it to every other device's
           stream, guarded by a per-notification marker, so only the first of
           any number of attempts appends anything (``store/streams.py``).
        4. Acknowledge (201/200); ``pending`` is cleared a few seconds later
           (``notisync/core/pending.py``).

        A crash or a Redis failure between 2 and 3 leaves the row pending;
        the answer is then 503, and the sweeper (every node, every few
        seconds, at start-up and after Redis comes back) or the phone's retry
        with the same ``source_key`` finishes step 3. So whatever a device
        receives exists, nothing stored is dropped, and nothing is appended
        twice.
        """
        source_device_id = source_device_id or data.get("source_device_id")
        if self.post_limit is not None and (wait := await self.post_limit(user_id)) > 0:
            # Checked before anything is stored: a refused post leaves no trace.
            raise RateLimited("too many notifications; retry later", retry_after=retry_after(wait))
        # The cached list says whether the sender is live; the fan-out's
        # version check confirms it before anything is sent.
        targets = await self.fan_out.device_list(user_id, source_device_id)
        decision = await self.decide(user_id, data, source_device_id)
        if decision.dropped:
            hooks.ingested("dropped")
            raise Dropped(decision.drop_rule)
        return await self.store_and_send(user_id, data, source_device_id, decision, targets)

    async def prepare(self, user_id: str) -> None:
        """Load what a post of this user reads first (device list, rules) unless it is cached.

        Called as a socket connects. After a fleet of devices (re)connects
        at once (a restart, a network change), their first posts otherwise
        all paid for these loads together, and the backlog showed as 100+ ms
        of delivery latency for the first half second of traffic.
        """
        try:
            await self.fan_out.device_list(user_id, None)
            if self.rules is not None:
                await self.rules.ruleset(user_id)
        except Exception as exc:  # only a head start: the first post loads them itself
            log.debug("preparing the caches of %s failed: %r", user_id, exc)

    async def decide(self, user_id: str, data: dict[str, Any], source_device_id: str | None) -> Decision:
        rules = await self.rules.ruleset(user_id) if self.rules is not None else NO_RULES
        return rules.decide(data, source_device_id)

    async def store_and_send(
        self, user_id: str, data: dict[str, Any], source_device_id: str | None, decision: Decision,
        targets: DeviceList | None = None,
    ) -> tuple[Record, bool]:
        """Steps 2 to 4 of ``create`` for a notification the rules let through."""
        now = utcnow()
        record: Record = {
            "id": new_id(),
            "user_id": user_id,
            "source_device_id": source_device_id,
            "source_key": data.get("source_key"),
            "app_name": data["app_name"],
            "title": data.get("title") or "",
            "body": data.get("body") or "",
            "category": decision.category,
            "priority": decision.priority,
            "actions": data.get("actions") or [],
            "version": 1,
            "is_read": False,
            "is_dismissed": False,
            "created_at": now,
            "updated_at": now,
            "expires_at": now + EXPIRY,
            "pending": True,
            "silent": decision.silent,
            "route": decision.route,
        }
        stored, created = await self.store.create_notification(record)
        if not created:
            if source_device_id:  # ask the store itself (a rare path)
                await self.devices.require_live(user_id, source_device_id)
            if stored.get("pending") and (stored["id"], stored.get("version") or 1) not in self.pending:
                await self.finish(stored)  # not known to be sent: finish it (appends at most once)
            if content_changes(stored, record):
                stored = await self.update_in_place(stored, record)
                hooks.ingested("updated")
            else:
                hooks.ingested("duplicate")
            return stored, False
        await self.finish(stored, targets, sender_must_be_live=True)
        hooks.ingested("stored")
        return stored, True

    async def finish(
        self, record: Record, targets: DeviceList | None = None, sender_must_be_live: bool = False
    ) -> None:
        """Step 3 for a stored notification: fan it out (once), then schedule clearing ``pending``.

        ``sender_must_be_live``: the post that stored it is still being
        answered, and a sender revoked meanwhile (on another node) makes it
        a 404 — but only if no attempt has appended it yet: the notification
        is then cancelled in Redis first (so no later attempt can append
        it) and deleted. Later attempts (retry, sweeper) deliver it anyway:
        it was accepted from a live device.
        """
        version = record.get("version") or 1
        # Version 1 is the notification itself; every later version is an
        # update in place with a fan-out marker of its own (see update_in_place).
        kind = protocol.NEW_NOTIFICATION if version == 1 else protocol.NOTIFICATION_UPDATED
        view = notification_view(record)
        silent = bool(record.get("silent"))
        try:
            await self.fan_out.send(
                record["user_id"], record["source_device_id"], kind,
                {**view, "silent": silent}, targets, once_for=fanout_marker(record),
                sender_must_be_live=sender_must_be_live and version == 1,
                # Per device: route, blocked apps, quiet hours, muted apps.
                shape=shape_new(record), silent_data=None if silent else {**view, "silent": True},
            )
        except NotFound:
            if not await self.fan_out.cancel(record["user_id"], record["id"]):
                self.pending.fanned_out(record["id"], version)
                return  # another attempt appended it first: it was delivered
            await self.store.delete_notification(record["user_id"], record["id"])
            raise
        except (RedisError, OSError) as exc:
            raise Unavailable(
                "stored, but not yet sent to your other devices; it will be sent when the real-time"
                " service is back (retry with the same source_key to confirm)", code="redis_unavailable",
            ) from exc
        self.pending.fanned_out(record["id"], version)

    async def sweep(self, grace: float = SWEEP_GRACE) -> int:
        """Finish notifications left pending for ``grace`` seconds; how many were finished."""
        finished = 0
        while True:
            rows = await self.store.list_pending(utcnow() - dt.timedelta(seconds=grace), SWEEP_BATCH)
            rows = [r for r in rows if (r["id"], r.get("version") or 1) not in self.pending]
            if not rows:
                return finished
            for record in rows:
                await self.finish(record)  # raises (the loop retries later) if Redis is away
            finished += len(rows)
            log.info("finished the fan-out of %d notification(s) left pending", len(rows))

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
            await self.fan_out.send(user_id, device_id, protocol.NOTIFICATION_SYNC, sync_view(record, device_id),
                                    shape=shape_sync(record, action))
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

    async def update_in_place(self, stored: Record, incoming: Record) -> Record:
        """A repeat post (same source device and source_key) with new content.

        The content and a new version are written in one atomic store step
        that also sets ``pending``, then fanned out as ``notification_updated``
        under a marker of that version (``fanout_marker``): a retried or
        swept update appends once, and each change appends its own frame.
        The store step only applies at the version read, so racing updates
        each apply to what the other left, in turn. Before any update the
        previous version's fan-out is finished (the caller did), so the
        other devices always receive versions in order.
        """
        current = stored
        for _ in range(UPDATE_TRIES):
            content = content_changes(current, incoming)
            if not content:
                return current
            updated = await self.store.update_notification_content(
                current["user_id"], current["id"], current.get("version") or 1, content, utcnow()
            )
            if updated is not None:
                await self.finish(updated)
                return updated
            reread = await self.store.get_notification(current["user_id"], current["id"])
            if reread is None:  # expired meanwhile: nothing left to update
                return current
            if reread.get("pending"):
                await self.finish(reread)
            current = reread
        raise Unavailable("the notification keeps changing; retry", code="update_conflict")

    async def invoke(
        self, user_id: str, notification_id: str, action_id: str, reply_text: str | None, device_id: str | None
    ) -> Record:
        """Send ``action_invoked`` to the notification's source device (its stream queues it).

        404: no such notification or action; 409: it is dismissed or
        expired (SPEC; once the store has purged an expired one, 404);
        400: a ``reply_text`` on a button.
        """
        if device_id:
            await self.devices.require_live(user_id, device_id)
        record = await self.store.get_notification(user_id, notification_id, include_expired=True)
        if record is None:
            raise NotFound("notification not found", code="notification_not_found")
        action = next((a for a in record.get("actions") or [] if a["id"] == action_id), None)
        if action is None:
            raise NotFound("the notification has no such action", code="action_not_found")
        expires_at = record.get("expires_at")
        if expires_at is not None and expires_at <= utcnow():
            raise Conflict("the notification expired", code="notification_expired")
        if record["is_dismissed"]:
            raise Conflict("the notification was dismissed", code="notification_dismissed")
        if reply_text is not None and action.get("type") != "reply":
            raise BadRequest("reply_text is only for reply actions", code="validation_error",
                             fields={"reply_text": "This action takes no reply text."})
        source = record.get("source_device_id")
        if source is None or source == device_id:
            # Nobody else to tell: a notification posted without a device,
            # or its own device invoking it, needs no frame.
            return record
        data = invoked_view(notification_id, action_id, reply_text, device_id)
        try:
            await self.fan_out.send_to(user_id, device_id, source, protocol.ACTION_INVOKED, data)
        except (RedisError, OSError) as exc:
            raise Unavailable("could not reach the source device's stream; retry", code="redis_unavailable") from exc
        return record


# A repeat post may change these in place (SPEC "Updates and actions").
CONTENT_FIELDS = ("title", "body", "category", "priority", "actions")
UPDATE_TRIES = 5


def content_changes(stored: Record, incoming: Record) -> Record:
    """The content fields of ``incoming`` that differ from ``stored`` (empty: unchanged)."""
    defaults = {"actions": [], "title": "", "body": ""}
    changed: Record = {}
    for name in CONTENT_FIELDS:
        new = incoming.get(name, defaults.get(name))
        old = stored.get(name, defaults.get(name))
        if new != (old if old is not None else defaults.get(name)):
            changed[name] = new
    return changed


def new_id() -> str:
    """What ``str(uuid.uuid4())`` gives (the same random bits and text), at a seventh of its cost.

    uuid.UUID's constructor checks and normalises in Python; one per
    notification showed in the ingest profile.
    """
    bits = int.from_bytes(os.urandom(16), "big")
    bits = (bits & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC variant
    h = "%032x" % bits
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def fanout_marker(record: Record) -> str:
    """Once-only identity of a fan-out: the notification for version 1, id:vN for each update."""
    version = record.get("version") or 1
    return record["id"] if version == 1 else f"{record['id']}:v{version}"


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
