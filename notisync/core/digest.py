"""The digest: a day's summary on demand, and the scheduled daily one.

Exactly once per user per local day, however many nodes run and restart:
the digest is stored as a notification whose ``source_key`` names the day
(``notisync-digest:YYYY-MM-DD``, no source device), so the store's unique
dedupe key is the claim. Every node tries every due schedule; one insert
wins, the rest get the existing record back and send nothing. The win is
fanned out like any notification (pending, swept if the node dies), so a
claimed digest is never lost either. A node starting later the same day
finds the digest due and not yet stored, and sends it: the catch-up.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo

from notisync.core import clock
from notisync.core.notifications import NotificationService
from notisync.core.preferences import minutes
from notisync.core.rules import Decision
from notisync.errors import ValidationFailed
from notisync.views import notification_view
from store.documents import DocumentStore, NotificationQuery, Record

log = logging.getLogger(__name__)

APP, TITLE = "NotiSync", "Daily digest"
KEY_PREFIX = "notisync-digest:"
PAGE = 200
TOP = 5
DEFAULT_SCHEDULE = {"enabled": False, "time": "08:00", "timezone": "UTC", "device_ids": None}


def day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants a local day starts and ends at (23 or 25 hours around DST changes)."""
    start = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.timezone.utc)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.timezone.utc)
    return start, end


class DigestService:
    def __init__(self, store: DocumentStore, notifications: NotificationService) -> None:
        self.store = store
        self.notifications = notifications
        self._done: set[tuple[str, str]] = set()  # (user, local date) this node knows are sent

    async def summary(self, user_id: str, date: str | None, timezone: str) -> dict[str, Any]:
        zone = ZoneInfo(timezone)
        if date is None:
            day = clock.now().astimezone(zone).date()
        else:
            try:
                day = dt.date.fromisoformat(date)
            except ValueError:
                raise ValidationFailed("invalid fields", fields={"date": "Not a valid date."}) from None
        try:
            start, end = day_bounds(day, zone)
        except (OverflowError, ValueError):  # 0001-01-01 east of UTC, 9999-12-31: no UTC instant
            raise ValidationFailed("invalid fields", fields={"date": "Out of range."}) from None
        rows = await self._day(user_id, start, end)
        by_app: dict[str, list[int]] = {}
        by_category = {"Work": 0, "Personal": 0, "Junk": 0}
        unread = 0
        for n in rows:
            fresh = not n["is_read"] and not n["is_dismissed"]
            unread += fresh
            counts = by_app.setdefault(n["app_name"], [0, 0])
            counts[0] += 1
            counts[1] += fresh
            by_category[n["category"]] = by_category.get(n["category"], 0) + 1
        top = sorted((n for n in rows if not n["is_read"] and not n["is_dismissed"]),
                     key=lambda n: (-n["priority"], -n["created_at"].timestamp()))[:TOP]
        return {
            "date": day.isoformat(), "timezone": timezone, "total": len(rows), "unread": unread,
            "by_app": [{"app_name": a, "count": c, "unread": u}
                       for a, (c, u) in sorted(by_app.items(), key=lambda kv: (-kv[1][0], kv[0]))],
            "by_category": by_category,
            "top": [notification_view(n) for n in top],
        }

    async def _day(self, user_id: str, start: dt.datetime, end: dt.datetime) -> list[Record]:
        out: list[Record] = []
        before: tuple[dt.datetime, str] | None = (end, "")  # strictly before the day's end
        while before is not None:
            page = await self.store.list_notifications(NotificationQuery(user_id, limit=PAGE, before=before))
            for n in page:
                if n["created_at"] < start:
                    return out
                if n["app_name"] != APP or not n["title"] == TITLE:  # a digest does not count itself
                    out.append(n)
            before = (page[-1]["created_at"], page[-1]["id"]) if len(page) == PAGE else None
        return out

    async def get_schedule(self, user_id: str) -> dict[str, Any]:
        return {**DEFAULT_SCHEDULE, **(await self.store.get_digest_schedule(user_id) or {})}

    async def set_schedule(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("device_ids"):
            live = {d["id"] for d in await self.store.list_devices(user_id)}
            unknown = [d for d in data["device_ids"] if d not in live]
            if unknown:
                raise ValidationFailed("invalid fields", fields={"device_ids": f"Unknown device: {unknown[0]}."})
        schedule = {**DEFAULT_SCHEDULE, **data}
        await self.store.set_digest_schedule(user_id, schedule)
        return schedule

    async def run_due(self) -> int:
        """Send every digest that is due today and not yet sent; how many this node sent."""
        now = clock.now()
        sent = 0
        for schedule in await self.store.list_digest_schedules():
            try:
                sent += await self._maybe_send(schedule, now)
            except Exception as exc:  # one user's failure must not stop the others'; retried next round
                log.warning("digest for %s failed: %r", schedule.get("user_id"), exc)
        return sent

    async def _maybe_send(self, schedule: Record, now: dt.datetime) -> int:
        user_id = schedule["user_id"]
        local = now.astimezone(ZoneInfo(schedule["timezone"]))
        if local.hour * 60 + local.minute < minutes(schedule["time"]):
            return 0
        today = local.date().isoformat()
        if (user_id, today) in self._done:
            return 0
        yesterday = (local.date() - dt.timedelta(days=1)).isoformat()
        summary = await self.summary(user_id, yesterday, schedule["timezone"])
        data = {"app_name": APP, "title": TITLE, "body": digest_text(summary), "category": "Personal",
                "priority": 0, "source_key": KEY_PREFIX + today}
        route = {"only": list(schedule["device_ids"])} if schedule.get("device_ids") else None
        decision = Decision([], "Personal", 0, False, False, None, route)
        _, created = await self.notifications.store_and_send(user_id, data, None, decision)
        self._done.add((user_id, today))
        if len(self._done) > 100_000:
            self._done.clear()
        return int(created)


def digest_text(summary: dict[str, Any]) -> str:
    if not summary["total"]:
        return f"{summary['date']}: no notifications."
    apps = ", ".join(f"{a['app_name']} {a['count']}" for a in summary["by_app"][:5])
    cats = " · ".join(f"{k} {v}" for k, v in summary["by_category"].items() if v)
    return f"{summary['date']}: {summary['total']} notifications, {summary['unread']} unread. {apps}. {cats}."
