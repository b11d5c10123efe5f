"""The document store interface: users, refresh tokens, devices, notifications.

Two implementations live beside this file: ``sqlite.py`` (the embedded
default) and ``mongo.py`` (MongoDB through motor). Both pass the same
contract suite in ``tests/test_store_contract.py``.

Records cross this interface as plain dicts whose keys are the field names of
DESIGN.md with ``id`` instead of ``_id``. Every datetime is timezone-aware UTC
truncated to whole milliseconds (MongoDB keeps no more), so a record reads
back exactly as it was written. Booleans are ``bool``. Nothing here knows
about HTTP; uniqueness violations surface as ``DuplicateKey``.
"""
from __future__ import annotations

import abc
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from store.hub_store import HubStore

Record = dict[str, Any]

# Fields a device update may set, and the notification flags an action may
# turn on: the same for every store.
DEVICE_UPDATABLE = frozenset({"device_name", "push_token", "last_seen"})
FLAGS = frozenset({"is_read", "is_dismissed"})
# What a repeat post with the same source_key may change in place.
CONTENT_FIELDS = ("title", "body", "category", "priority", "actions")


def dedupe_key(source_device_id: str | None, source_key: str | None) -> str | None:
    """The unique key of a notification with a ``source_key`` (None without one).

    JSON rather than "device|key": a "|" inside a device id or key cannot
    make two different pairs collide.
    """
    if source_key is None:
        return None
    return json.dumps([source_device_id, source_key], separators=(",", ":"))


def utcnow() -> dt.datetime:
    """Now, in UTC, truncated to milliseconds (the precision both stores keep)."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class NotificationQuery:
    """Filters for listing one user's notifications, newest first.

    ``before`` is the (created_at, id) of the last item of the previous page:
    the page holds items strictly older in that order, so ties on created_at
    are broken by id descending and no item is skipped or repeated.
    ``q`` matches title, body or app_name, case-insensitively, as a plain
    substring (no pattern syntax).
    """

    user_id: str
    limit: int = 50
    before: tuple[dt.datetime, str] | None = None
    app_name: str | None = None
    category: str | None = None
    is_read: bool | None = None
    is_dismissed: bool | None = None
    q: str | None = None


@dataclass(frozen=True)
class Selection:
    """The notifications a bulk action covers: one user's live ones that
    match every given part (``ids`` and/or the filters)."""

    user_id: str
    ids: tuple[str, ...] | None = None
    app_name: str | None = None
    category: str | None = None
    before: dt.datetime | None = None  # created strictly before this time
    source_key: str | None = None  # the phone's own key (with source_device_id, when given)
    source_device_id: str | None = None


class DocumentStore(HubStore, abc.ABC):
    """Durable records. Every method is a coroutine and safe to call concurrently."""

    backend: str = "abstract"

    # -- life cycle -------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create tables/indexes if missing. Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the backing database cannot answer right now."""

    # -- users ------------------------------------------------------------
    @abc.abstractmethod
    async def create_user(self, user: Record) -> Record:
        """Insert ``{id, email, password_hash, created_at}``.

        ``email`` is stored lower-cased; raise ``DuplicateKey`` if taken.
        """

    @abc.abstractmethod
    async def get_user(self, user_id: str) -> Record | None: ...

    @abc.abstractmethod
    async def set_password_hash(self, user_id: str, password_hash: str) -> bool:
        """Replace the user's password hash; False if there is no such user."""

    @abc.abstractmethod
    async def delete_user(self, user_id: str) -> list[str]:
        """Delete the user with every device, notification, session and refresh token of theirs.

        Returns the ids of the devices that were deleted (revoked ones
        included), so the caller can drop what it keeps elsewhere for them.
        """

    @abc.abstractmethod
    async def get_user_by_email(self, email: str) -> Record | None:
        """Look up case-insensitively."""

    # -- refresh tokens -----------------------------------------------------
    @abc.abstractmethod
    async def add_refresh_token(
        self, token_hash: str, user_id: str, expires_at: dt.datetime
    ) -> None: ...

    @abc.abstractmethod
    async def use_refresh_token(self, token_hash: str, now: dt.datetime) -> str:
        """Atomically mark a refresh token used.

        Returns ``"ok"`` if it was unused and unexpired (now it is used),
        ``"reused"`` if it had already been used, ``"unknown"`` if absent or
        expired. Two concurrent calls for one token: exactly one gets "ok".
        """

    @abc.abstractmethod
    async def revoke_refresh_tokens(self, user_id: str) -> None:
        """Make every refresh token of the user unusable."""

    # -- sessions -------------------------------------------------------------
    @abc.abstractmethod
    async def create_session(self, session: Record) -> None:
        """Insert ``{id, user_id, device_id, created_at, ended_at}`` (device_id None: unbound)."""

    @abc.abstractmethod
    async def get_session(self, session_id: str) -> Record | None:
        """Any session by id, ended ones included."""

    @abc.abstractmethod
    async def list_sessions(self, user_id: str) -> list[Record]:
        """The user's sessions that have not ended."""

    @abc.abstractmethod
    async def end_sessions(self, user_id: str, session_ids: list[str], now: dt.datetime) -> None:
        """Set ended_at on those of the user's sessions still going (others' ids are ignored)."""

    # -- devices ------------------------------------------------------------
    @abc.abstractmethod
    async def create_device(self, device: Record) -> tuple[Record, bool]:
        """Insert ``{id, user_id, device_name, device_type, push_token,
        last_seen, created_at, revoked_at}``.

        If a device with that id exists: for the same user return
        ``(existing, False)`` unchanged (revoked or not: the caller decides);
        for another user raise ``DuplicateKey``. Otherwise ``(device, True)``.
        """

    @abc.abstractmethod
    async def get_device(self, device_id: str) -> Record | None:
        """Any device by id, revoked ones included."""

    @abc.abstractmethod
    async def list_devices(self, user_id: str) -> list[Record]:
        """The user's devices that are not revoked, oldest first."""

    @abc.abstractmethod
    async def update_device(
        self, user_id: str, device_id: str, fields: Record
    ) -> Record | None:
        """Set ``fields`` (device_name, push_token, last_seen) on a live device
        of that user; None if there is no such live device."""

    @abc.abstractmethod
    async def revoke_device(
        self, user_id: str, device_id: str, now: dt.datetime
    ) -> bool:
        """Set revoked_at on a live device of that user; False if none."""

    # -- notifications ------------------------------------------------------
    @abc.abstractmethod
    async def create_notification(self, notification: Record) -> tuple[Record, bool]:
        """Insert ``{id, user_id, source_device_id, source_key, app_name, title,
        body, category, priority, is_read, is_dismissed, created_at,
        updated_at, expires_at, pending, silent, route}``.

        ``silent`` (bool) and ``route`` (a small dict or None) are what the
        user's rules decided for its fan-out (``notisync/core/rules.py``).

        ``pending`` (bool) says the notification is stored but not yet known
        to be in every recipient's stream; ``clear_pending`` ends that.

        When ``source_key`` is not None and the same user already has a
        notification with the same ``(source_device_id, source_key)``
        (source_device_id may be None), return ``(existing, False)`` and
        insert nothing; concurrent duplicates resolve to one record.
        """

    @abc.abstractmethod
    async def get_notification(
        self, user_id: str, notification_id: str, include_expired: bool = False
    ) -> Record | None:
        """None when absent, past ``expires_at`` or another user's.

        ``include_expired``: also one past ``expires_at`` that the store still
        holds (SQLite until its purge; MongoDB's TTL monitor removes it within
        about a minute): invoke answers 409 rather than 404 for it.
        """

    @abc.abstractmethod
    async def delete_notification(self, user_id: str, notification_id: str) -> None:
        """Remove one (used to undo an insert whose fan-out failed)."""

    @abc.abstractmethod
    async def list_pending(self, before: dt.datetime, limit: int) -> list[Record]:
        """Notifications of any user still ``pending`` and created before
        ``before``, oldest first, at most ``limit``."""

    @abc.abstractmethod
    async def clear_pending(self, notification_ids: list[str]) -> None:
        """Set ``pending`` to False on these notifications (missing ids are ignored)."""

    @abc.abstractmethod
    async def list_notifications(self, query: NotificationQuery) -> list[Record]:
        """At most ``query.limit`` records, newest first (created_at desc, id desc)."""

    @abc.abstractmethod
    async def set_notification_flags(
        self, user_id: str, notification_id: str, flags: Record, now: dt.datetime
    ) -> Record | None:
        """Atomically set the given boolean flags (is_read, is_dismissed) to
        True and updated_at to ``now``; return the record after the change,
        or None if the user has no such notification. Flags never go back
        to False, so concurrent calls converge."""

    @abc.abstractmethod
    async def update_notification_content(
        self, user_id: str, notification_id: str, version: int, content: Record, now: dt.datetime
    ) -> Record | None:
        """Atomically replace content fields (any of ``CONTENT_FIELDS``) of the
        user's live notification if its ``version`` (absent counts as 1) is
        ``version``: also set version to ``version + 1``, updated_at to
        ``now`` and ``pending`` to True (its update is not yet fanned out).
        Returns the record after the change; None if there is no such live
        notification at that version (another update won the race).
        Flags (is_read, is_dismissed) are left as they are."""

    @abc.abstractmethod
    async def clear_pending_at(self, items: list[tuple[str, int]]) -> None:
        """Set ``pending`` to False on each (notification id, version) whose
        version (absent counts as 1) is still that one: clearing after an
        older version's fan-out never hides a newer update still pending."""

    @abc.abstractmethod
    async def purge_expired(self, now: dt.datetime) -> int:
        """Delete notifications whose expires_at <= now; return how many."""

    # -- device API keys (SPEC "Phones, bulk actions, counts") ----------------
    @abc.abstractmethod
    async def create_api_key(self, key: Record) -> None:
        """Insert ``{id, user_id, device_id, name, key_hash, created_at, last_used_at}``.

        ``key_hash`` is unique (``DuplicateKey``); the key itself is never stored.
        """

    @abc.abstractmethod
    async def get_api_key(self, key_hash: str) -> Record | None:
        """The key with this hash, or None."""

    @abc.abstractmethod
    async def list_api_keys(self, user_id: str, device_id: str) -> list[Record]:
        """The device's keys (of that user only), oldest first."""

    @abc.abstractmethod
    async def delete_api_key(self, user_id: str, device_id: str, key_id: str) -> bool:
        """Remove one of the user's device's keys; False if there is no such key."""

    @abc.abstractmethod
    async def touch_api_key(self, key_id: str, now: dt.datetime) -> None:
        """Set last_used_at (missing ids are ignored)."""

    # -- counts and bulk actions ------------------------------------------------
    @abc.abstractmethod
    async def count_notifications(self, user_id: str) -> Record:
        """Over the user's live, undismissed notifications: ``{total, unread,
        by_category: {category: total}, by_app: {app_name: unread}}``."""

    @abc.abstractmethod
    async def set_flags_where(self, selection: Selection, flags: Record, now: dt.datetime) -> list[Record]:
        """Turn the given flags on (and updated_at to ``now``) for every
        selected notification that does not have all of them yet; return
        those records after the change. The rest are left as they are, so a
        notification changed here was changed by this call alone."""
