"""MongoDB document store.

motor is past its end of life and PyMongo's ``AsyncMongoClient`` is its
successor with nearly the same API, so the driver is chosen in exactly one
place (``make_client``). Everything else uses only calls both share
(``insert_one``, ``find_one_and_update``, cursors' ``to_list`` ...) and
imports nothing but ``pymongo`` (``ReturnDocument``, ``DuplicateKeyError``),
which both drivers ship. The tests also run it against mongomock-motor.
"""
from __future__ import annotations

import datetime as dt
import inspect
import re
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from store.errors import DuplicateKey
from store.mongo_hub import MongoHubMixin
from store.mongo_phone import MongoPhone
from store.documents import CONTENT_FIELDS, DEVICE_UPDATABLE, FLAGS, DocumentStore, NotificationQuery, Record, dedupe_key, utcnow

DEFAULT_DB = "notisync"
INTERNAL_FIELDS = ("dedupe_key",)


def make_client(url: str) -> Any:
    """The one place that picks the driver (swap for pymongo.AsyncMongoClient here)."""
    from motor.motor_asyncio import AsyncIOMotorClient

    return AsyncIOMotorClient(
        url,
        serverSelectionTimeoutMS=5000,
        tz_aware=True,
        uuidRepresentation="standard",
    )


def _utc(value: Any) -> Any:
    # tz_aware=True makes real MongoDB return aware datetimes, but mongomock
    # may hand back naive ones or its own FixedOffset: normalise to timezone.utc.
    if not isinstance(value, dt.datetime):
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def at_version(version: int) -> dict[str, Any]:
    """A filter for a notification's content version; records written without one are at 1."""
    return {"version": {"$in": [None, 1]}} if version == 1 else {"version": version}


def to_record(doc: dict[str, Any] | None) -> Record | None:
    return None if doc is None else as_record(doc)


def as_record(doc: dict[str, Any]) -> Record:
    """A stored document as the interface's record: ``id``, no internal fields."""
    out: Record = {"id": doc["_id"]}
    for key, value in doc.items():
        if key != "_id" and key not in INTERNAL_FIELDS:
            out[key] = _utc(value)
    return out


def to_doc(record: Record) -> dict[str, Any]:
    doc = {k: v for k, v in record.items() if k != "id"}
    doc["_id"] = record["id"]
    return doc


class MongoStore(MongoHubMixin, MongoPhone, DocumentStore):
    """Takes ownership of ``client``: ``close()`` closes it."""

    backend = "mongodb"

    def __init__(self, client: Any, db_name: str = DEFAULT_DB) -> None:
        self._client = client
        self._db = client[db_name]
        self.db_name = db_name
        self.users = self._db["users"]
        self.refresh_tokens = self._db["refresh_tokens"]
        self.devices = self._db["devices"]
        self.notifications = self._db["notifications"]
        self.sessions = self._db["sessions"]

    @classmethod
    def from_url(cls, url: str) -> "MongoStore":
        """A store on the database named in the URL's path, else ``notisync``."""
        client = make_client(url)
        return cls(client, client.get_default_database(DEFAULT_DB).name)

    # -- life cycle -----------------------------------------------------------
    async def open(self) -> None:
        # create_index is a no-op when an identical index exists, so this is
        # idempotent and safe for several servers starting at once.
        await self.users.create_index("email", unique=True)
        await self.refresh_tokens.create_index("user_id")
        await self.refresh_tokens.create_index("expires_at", expireAfterSeconds=0)
        await self.devices.create_index("user_id")
        await self.sessions.create_index("user_id")
        await self._open_phone()
        await self.notifications.create_index(
            [("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]
        )
        await self.notifications.create_index("expires_at", expireAfterSeconds=0)
        # The sweeper's query: rows whose fan-out is not known to be complete.
        await self.notifications.create_index([("pending", ASCENDING), ("created_at", ASCENDING)])
        # Only notifications with a source_key take part in dedupe. A partial
        # index (not sparse) is what real MongoDB needs for a compound key:
        # sparse skips a document only when *every* indexed field is missing,
        # and user_id never is. mongomock honours partialFilterExpression in
        # its unique check too (verified with 4.3.0), and create_notification
        # also omits the field when there is no source_key, so documents
        # without one are outside the index on every backend.
        await self.notifications.create_index(
            [("user_id", ASCENDING), ("dedupe_key", ASCENDING)],
            unique=True,
            partialFilterExpression={"dedupe_key": {"$type": "string"}},
        )
        await self._open_hub()

    async def close(self) -> None:
        # motor's close() is synchronous, AsyncMongoClient's is a coroutine.
        result = self._client.close()
        if inspect.isawaitable(result):
            await result

    async def ping(self) -> None:
        await self._db.command("ping")

    # -- users ------------------------------------------------------------------
    async def create_user(self, user: Record) -> Record:
        record = {**user, "email": str(user["email"]).lower()}
        try:
            await self.users.insert_one(to_doc(record))
        except DuplicateKeyError as exc:
            raise DuplicateKey(str(exc)) from exc
        return record

    async def get_user(self, user_id: str) -> Record | None:
        return to_record(await self.users.find_one({"_id": user_id}))

    async def get_user_by_email(self, email: str) -> Record | None:
        return to_record(await self.users.find_one({"email": email.lower()}))

    # -- refresh tokens -----------------------------------------------------------
    async def add_refresh_token(
        self, token_hash: str, user_id: str, expires_at: dt.datetime
    ) -> None:
        doc = {"_id": token_hash, "user_id": user_id, "expires_at": expires_at, "used_at": None}
        try:
            await self.refresh_tokens.insert_one(doc)
        except DuplicateKeyError as exc:
            raise DuplicateKey(str(exc)) from exc

    async def use_refresh_token(self, token_hash: str, now: dt.datetime) -> str:
        # One conditional update is the atomic step: only one caller can
        # match used_at == None and flip it.
        claimed = await self.refresh_tokens.find_one_and_update(
            {"_id": token_hash, "used_at": None, "expires_at": {"$gt": now}},
            {"$set": {"used_at": now}},
        )
        if claimed is not None:
            return "ok"
        doc = await self.refresh_tokens.find_one({"_id": token_hash})
        # An expired token is "unknown" even if it was also used.
        if doc is None or _utc(doc["expires_at"]) <= now:
            return "unknown"
        return "reused"

    async def revoke_refresh_tokens(self, user_id: str) -> None:
        await self.refresh_tokens.delete_many({"user_id": user_id})

    async def set_password_hash(self, user_id: str, password_hash: str) -> bool:
        result = await self.users.update_one({"_id": user_id}, {"$set": {"password_hash": password_hash}})
        return result.matched_count == 1

    async def delete_user(self, user_id: str) -> list[str]:
        # No multi-document transaction (a standalone MongoDB has none): the
        # user goes last, so a failure part-way leaves an account that can
        # still sign in and delete itself again.
        devices = [d["_id"] for d in await self.devices.find({"user_id": user_id}, {"_id": 1}).to_list(length=None)]
        await self.notifications.delete_many({"user_id": user_id})
        await self.devices.delete_many({"user_id": user_id})
        await self.refresh_tokens.delete_many({"user_id": user_id})
        await self.sessions.delete_many({"user_id": user_id})
        await self._delete_hub(user_id)
        await self.api_keys.delete_many({"user_id": user_id})
        await self.users.delete_one({"_id": user_id})
        return devices

    # -- sessions -----------------------------------------------------------------
    async def create_session(self, session: Record) -> None:
        await self.sessions.insert_one(to_doc(session))

    async def get_session(self, session_id: str) -> Record | None:
        return to_record(await self.sessions.find_one({"_id": session_id}))

    async def list_sessions(self, user_id: str) -> list[Record]:
        docs = await self.sessions.find({"user_id": user_id, "ended_at": None}).to_list(length=None)
        return [as_record(d) for d in docs]

    async def end_sessions(self, user_id: str, session_ids: list[str], now: dt.datetime) -> None:
        if session_ids:
            await self.sessions.update_many(
                {"_id": {"$in": session_ids}, "user_id": user_id, "ended_at": None}, {"$set": {"ended_at": now}}
            )

    # -- devices ------------------------------------------------------------------
    async def create_device(self, device: Record) -> tuple[Record, bool]:
        try:
            await self.devices.insert_one(to_doc(device))
        except DuplicateKeyError as exc:
            existing = await self.devices.find_one({"_id": device["id"]})
            if existing is None or existing["user_id"] != device["user_id"]:
                raise DuplicateKey(f"device id {device['id']!r} belongs to another user") from exc
            return as_record(existing), False
        return dict(device), True

    async def get_device(self, device_id: str) -> Record | None:
        return to_record(await self.devices.find_one({"_id": device_id}))

    async def list_devices(self, user_id: str) -> list[Record]:
        cursor = self.devices.find({"user_id": user_id, "revoked_at": None})
        docs = await cursor.sort([("created_at", ASCENDING), ("_id", ASCENDING)]).to_list(None)
        return [as_record(d) for d in docs]

    async def update_device(
        self, user_id: str, device_id: str, fields: Record
    ) -> Record | None:
        unknown = set(fields) - DEVICE_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update device fields {sorted(unknown)}")
        live = {"_id": device_id, "user_id": user_id, "revoked_at": None}
        if not fields:  # MongoDB rejects an empty $set
            return to_record(await self.devices.find_one(live))
        doc = await self.devices.find_one_and_update(
            live, {"$set": dict(fields)}, return_document=ReturnDocument.AFTER
        )
        return to_record(doc)

    async def revoke_device(
        self, user_id: str, device_id: str, now: dt.datetime
    ) -> bool:
        result = await self.devices.update_one(
            {"_id": device_id, "user_id": user_id, "revoked_at": None},
            {"$set": {"revoked_at": now}},
        )
        return result.modified_count == 1

    # -- notifications ------------------------------------------------------------
    async def create_notification(self, notification: Record) -> tuple[Record, bool]:
        record = {**notification, "source_key": notification.get("source_key")}
        doc = to_doc(record)
        key = dedupe_key(record.get("source_device_id"), record["source_key"])
        if key is not None:
            doc["dedupe_key"] = key
        try:
            await self.notifications.insert_one(doc)
        except DuplicateKeyError as exc:
            existing = None
            if key is not None:
                existing = await self.notifications.find_one(
                    {"user_id": record["user_id"], "dedupe_key": key}
                )
            if existing is None:  # the clash was on the id, not on dedupe
                raise DuplicateKey(str(exc)) from exc
            return as_record(existing), False
        return record, True

    async def get_notification(
        self, user_id: str, notification_id: str, include_expired: bool = False
    ) -> Record | None:
        expiry = {} if include_expired else live()
        doc = await self.notifications.find_one({"_id": notification_id, "user_id": user_id, **expiry})
        return to_record(doc)

    async def delete_notification(self, user_id: str, notification_id: str) -> None:
        await self.notifications.delete_one({"_id": notification_id, "user_id": user_id})

    async def list_pending(self, before: dt.datetime, limit: int) -> list[Record]:
        cursor = self.notifications.find({"pending": True, "created_at": {"$lt": before}})
        docs = await cursor.sort("created_at", ASCENDING).limit(limit).to_list(length=limit)
        return [as_record(doc) for doc in docs]

    async def clear_pending(self, notification_ids: list[str]) -> None:
        if notification_ids:
            await self.notifications.update_many(
                {"_id": {"$in": notification_ids}}, {"$set": {"pending": False}}
            )

    async def list_notifications(self, query: NotificationQuery) -> list[Record]:
        if query.limit <= 0:  # limit(0) means "no limit" to MongoDB
            return []
        cursor = self.notifications.find(notification_filter(query))
        if query.q:
            # The substring regex runs over this user's documents only (the
            # user_id index), and never longer than this: past it the server
            # stops (ExecutionTimeout), and the API answers 503.
            cursor = cursor.max_time_ms(SEARCH_MAX_MS)
        cursor = cursor.sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(query.limit)
        return [as_record(d) for d in await cursor.to_list(query.limit)]

    async def set_notification_flags(
        self, user_id: str, notification_id: str, flags: Record, now: dt.datetime
    ) -> Record | None:
        unknown = set(flags) - FLAGS
        if unknown:
            raise ValueError(f"unknown notification flags {sorted(unknown)}")
        # Flags only ever turn on; a False in ``flags`` is simply not applied.
        changes: dict[str, Any] = {name: True for name, on in flags.items() if on}
        changes["updated_at"] = now
        doc = await self.notifications.find_one_and_update(
            {"_id": notification_id, "user_id": user_id, **live()},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
        return to_record(doc)

    async def update_notification_content(
        self, user_id: str, notification_id: str, version: int, content: Record, now: dt.datetime
    ) -> Record | None:
        unknown = set(content) - set(CONTENT_FIELDS)
        if unknown:
            raise ValueError(f"not content fields: {sorted(unknown)}")
        # One find_one_and_update: a single-document write is atomic, so no
        # reader sees half of the new content.
        doc = await self.notifications.find_one_and_update(
            {"_id": notification_id, "user_id": user_id, **at_version(version), **live()},
            {"$set": {**content, "version": version + 1, "updated_at": now, "pending": True}},
            return_document=ReturnDocument.AFTER,
        )
        return to_record(doc)

    async def clear_pending_at(self, items: list[tuple[str, int]]) -> None:
        by_version: dict[int, list[str]] = {}
        for notification_id, version in items:
            by_version.setdefault(version, []).append(notification_id)
        for version, ids in by_version.items():
            await self.notifications.update_many(
                {"_id": {"$in": ids}, **at_version(version)}, {"$set": {"pending": False}}
            )

    async def purge_expired(self, now: dt.datetime) -> int:
        # The TTL index does this on a real server within a minute; the sweep
        # keeps the method's promise on its own (and on mongomock).
        result = await self.notifications.delete_many({"expires_at": {"$lte": now}})
        await self.refresh_tokens.delete_many({"expires_at": {"$lte": now}})
        return result.deleted_count


# A search's budget on the server, in ms; see list_notifications.
SEARCH_MAX_MS = 2000


def live() -> dict[str, Any]:
    """Not past expires_at: the TTL index removes such documents only within a minute or so,
    and an expired notification must be gone from every answer at once."""
    return {"$nor": [{"expires_at": {"$lte": utcnow()}}]}


def notification_filter(query: NotificationQuery) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = [{"user_id": query.user_id}, live()]
    if query.before is not None:
        created, last_id = query.before
        clauses.append(
            {"$or": [
                {"created_at": {"$lt": created}},
                {"created_at": created, "_id": {"$lt": last_id}},
            ]}
        )
    for field in ("app_name", "category", "is_read", "is_dismissed"):
        value = getattr(query, field)
        if value is not None:
            clauses.append({field: value})
    if query.q:
        pattern = {"$regex": re.escape(query.q), "$options": "i"}
        clauses.append({"$or": [{f: pattern} for f in ("title", "body", "app_name")]})
    return {"$and": clauses}
