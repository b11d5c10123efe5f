"""MongoDB side of ``store/hub_store.py``: rules, device preferences, digest schedules.

A mixin of ``MongoStore`` (its ``_db``). Rule creation counts then inserts:
a standalone MongoDB has no multi-document transaction, so two concurrent
creations at the limit may both pass (the cap may be exceeded by the
number of racing requests; the SQLite store is exact).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo import ASCENDING, ReturnDocument

from store.hub_store import RULE_FIELDS, HubStore, Record


def _rule(doc: dict[str, Any] | None) -> Record | None:
    if doc is None:
        return None
    out = {"id": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}
    created = out.get("created_at")
    if created is not None and created.tzinfo is None:  # mongomock hands back naive datetimes
        out["created_at"] = created.replace(tzinfo=dt.timezone.utc)
    return out


class MongoHubMixin(HubStore):
    _db: Any

    async def _open_hub(self) -> None:
        await self._db["rules"].create_index([("user_id", ASCENDING), ("position", ASCENDING)])
        await self._db["device_prefs"].create_index("user_id")
        await self._db["digest_schedules"].create_index("enabled")

    async def _delete_hub(self, user_id: str) -> None:
        for name in ("rules", "device_prefs", "digest_schedules"):
            await self._db[name].delete_many({"user_id": user_id})

    # -- rules ----------------------------------------------------------------
    async def list_rules(self, user_id: str) -> list[Record]:
        cursor = self._db["rules"].find({"user_id": user_id}).sort(
            [("position", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)]
        )
        return [_rule(d) for d in await cursor.to_list(length=None)]  # type: ignore[misc]

    async def create_rule(self, rule: Record, limit: int) -> Record | None:
        rules = self._db["rules"]
        if await rules.count_documents({"user_id": rule["user_id"]}) >= limit:
            return None
        row = dict(rule)
        if row.get("position") is None:
            last = await rules.find({"user_id": rule["user_id"]}).sort("position", -1).limit(1).to_list(length=1)
            row["position"] = last[0]["position"] + 1 if last else 0
        await rules.insert_one({"_id": row["id"], **{k: v for k, v in row.items() if k != "id"}})
        # Counted again after the insert: of creates racing at the limit, each
        # sees the others' rows and one over the limit undoes its own. So the
        # limit is never overshot; at worst a racer is refused that would have fit.
        if await rules.count_documents({"user_id": rule["user_id"]}) > limit:
            await rules.delete_one({"_id": row["id"]})
            return None
        return row

    async def update_rule(self, user_id: str, rule_id: str, fields: Record) -> Record | None:
        unknown = set(fields) - set(RULE_FIELDS)
        if unknown:
            raise ValueError(f"cannot update rule fields {sorted(unknown)}")
        doc = await self._db["rules"].find_one_and_update(
            {"_id": rule_id, "user_id": user_id}, {"$set": dict(fields)}, return_document=ReturnDocument.AFTER
        )
        return _rule(doc)

    async def delete_rule(self, user_id: str, rule_id: str) -> bool:
        result = await self._db["rules"].delete_one({"_id": rule_id, "user_id": user_id})
        return result.deleted_count == 1

    # -- device preferences ---------------------------------------------------
    async def get_preferences(self, user_id: str) -> dict[str, Record]:
        docs = await self._db["device_prefs"].find({"user_id": user_id}).to_list(length=None)
        return {d["_id"]: d["prefs"] for d in docs}

    async def update_preferences(self, user_id: str, device_id: str, fields: Record) -> Record:
        # One $set per field: the server applies the document update atomically,
        # so concurrent updates of different fields never overwrite each other.
        doc = await self._db["device_prefs"].find_one_and_update(
            {"_id": device_id, "user_id": user_id}, {"$set": {f"prefs.{k}": v for k, v in fields.items()}},
            upsert=True, return_document=ReturnDocument.AFTER,
        )
        return dict(doc["prefs"])

    # -- digest schedules -----------------------------------------------------
    async def get_digest_schedule(self, user_id: str) -> Record | None:
        doc = await self._db["digest_schedules"].find_one({"_id": user_id})
        return None if doc is None else doc["schedule"]

    async def set_digest_schedule(self, user_id: str, schedule: Record) -> None:
        await self._db["digest_schedules"].update_one(
            {"_id": user_id},
            {"$set": {"user_id": user_id, "enabled": bool(schedule.get("enabled")), "schedule": schedule}},
            upsert=True,
        )

    async def list_digest_schedules(self) -> list[Record]:
        docs = await self._db["digest_schedules"].find({"enabled": True}).to_list(length=None)
        return [{**d["schedule"], "user_id": d["user_id"]} for d in docs]
