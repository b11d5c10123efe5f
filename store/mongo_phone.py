"""MongoDB: device API keys, counts and bulk actions (SPEC "Phones, bulk actions, counts").

A mixin of ``MongoStore`` (store/mongo.py), kept apart so neither file
outgrows a reading. Only calls motor, PyMongo's async client and
mongomock-motor all share.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from store.documents import FLAGS, Record, Selection
from store.errors import DuplicateKey

# Ids per query in a bulk action: keeps each $in well under the 16 MB document limit.
IDS_CHUNK = 500


class MongoPhone:
    _db: Any
    notifications: Any

    @property
    def api_keys(self) -> Any:
        return self._db["api_keys"]

    async def _open_phone(self) -> None:
        await self.api_keys.create_index("key_hash", unique=True)
        await self.api_keys.create_index([("user_id", ASCENDING), ("device_id", ASCENDING)])

    # -- API keys ------------------------------------------------------------------
    async def create_api_key(self, key: Record) -> None:
        from store.mongo import to_doc

        try:
            await self.api_keys.insert_one(to_doc(key))
        except DuplicateKeyError as exc:
            raise DuplicateKey(str(exc)) from exc

    async def get_api_key(self, key_hash: str) -> Record | None:
        from store.mongo import to_record

        return to_record(await self.api_keys.find_one({"key_hash": key_hash}))

    async def list_api_keys(self, user_id: str, device_id: str) -> list[Record]:
        from store.mongo import as_record

        cursor = self.api_keys.find({"user_id": user_id, "device_id": device_id})
        docs = await cursor.sort([("created_at", ASCENDING), ("_id", ASCENDING)]).to_list(length=None)
        return [as_record(d) for d in docs]

    async def delete_api_key(self, user_id: str, device_id: str, key_id: str) -> bool:
        result = await self.api_keys.delete_one({"_id": key_id, "user_id": user_id, "device_id": device_id})
        return result.deleted_count == 1

    async def touch_api_key(self, key_id: str, now: dt.datetime) -> None:
        await self.api_keys.update_one({"_id": key_id}, {"$set": {"last_used_at": now}})

    # -- counts and bulk actions -------------------------------------------------------
    async def count_notifications(self, user_id: str) -> Record:
        from store.mongo import live

        pipeline = [
            {"$match": {"$and": [{"user_id": user_id, "is_dismissed": False}, live()]}},
            {"$group": {
                "_id": {"category": "$category", "app_name": "$app_name"},
                "total": {"$sum": 1},
                "unread": {"$sum": {"$cond": [{"$eq": ["$is_read", False]}, 1, 0]}},
            }},
        ]
        rows = await self.notifications.aggregate(pipeline).to_list(length=None)
        by_category: dict[str, int] = {}
        by_app: dict[str, int] = {}
        for row in rows:
            category, app = row["_id"]["category"], row["_id"]["app_name"]
            by_category[category] = by_category.get(category, 0) + row["total"]
            by_app[app] = by_app.get(app, 0) + row["unread"]
        return {
            "total": sum(r["total"] for r in rows), "unread": sum(r["unread"] for r in rows),
            "by_category": by_category, "by_app": by_app,
        }

    async def set_flags_where(self, selection: Selection, flags: Record, now: dt.datetime) -> list[Record]:
        """Find the candidates, then flip each with a guarded update: a record
        is returned only by the call whose update changed it, as with SQLite."""
        from store.mongo import as_record, live

        names = [name for name, on in flags.items() if on]
        if set(flags) - FLAGS or not names:
            raise ValueError(f"bad notification flags {sorted(flags)}")
        clauses: list[dict[str, Any]] = [
            {"user_id": selection.user_id}, live(), {"$or": [{name: False} for name in names]},
        ]
        for field in ("app_name", "category", "source_key", "source_device_id"):
            if getattr(selection, field) is not None:
                clauses.append({field: getattr(selection, field)})
        if selection.before is not None:
            clauses.append({"created_at": {"$lt": selection.before}})
        batches = [None] if selection.ids is None else [
            list(selection.ids[i : i + IDS_CHUNK]) for i in range(0, len(selection.ids), IDS_CHUNK)
        ]
        changed: list[Record] = []
        for batch in batches:
            query = {"$and": clauses + ([{"_id": {"$in": batch}}] if batch is not None else [])}
            candidates = await self.notifications.find(query, {"_id": 1}).to_list(length=None)
            for doc in candidates:
                after = await self.notifications.find_one_and_update(
                    {"$and": [{"_id": doc["_id"]}, *clauses]},
                    {"$set": {**{name: True for name in names}, "updated_at": now}},
                    return_document=ReturnDocument.AFTER,
                )
                if after is not None:
                    changed.append(as_record(after))
        return changed
