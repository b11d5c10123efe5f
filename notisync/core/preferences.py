"""Device preferences: defaults, and the compiled policy the fan-out applies per device.

Pure (no I/O): ``devicepolicy.py`` stores and caches. A policy answers, for
one device and one notification at the moment it is fanned out: is it kept
out of the device's stream (a blocked app, or the rules' routing), and does
it arrive ``silent`` (quiet hours in the device's time zone, a muted app).
App names in the lists match like a rule's ``app_name``: case-insensitive,
``*`` for any run of characters.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from notisync.core.rules import Glob

DEFAULTS: dict[str, Any] = {"quiet_hours": None, "muted_apps": [], "blocked_apps": [], "sync_dismissals": True}
MINUTES_PER_DAY = 24 * 60


def view(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The full preferences of a device (defaults for whatever was never set)."""
    out = {**DEFAULTS, **(stored or {})}
    return {k: out[k] for k in DEFAULTS}


def minutes(hhmm: str) -> int:
    hours, _, mins = hhmm.partition(":")
    return int(hours) * 60 + int(mins)


@dataclass(frozen=True)
class QuietHours:
    start: int  # minutes after local midnight
    end: int
    zone: ZoneInfo
    days: frozenset[int]  # 0 = Monday; the day a window *starts* on

    def active(self, now: dt.datetime) -> bool:
        local = now.astimezone(self.zone)
        t = local.hour * 60 + local.minute
        today = local.weekday()
        if self.start == self.end:  # a whole day
            return today in self.days
        if self.start < self.end:
            return today in self.days and self.start <= t < self.end
        # Crosses midnight: the evening part belongs to today's window, the
        # morning part to the window that started yesterday.
        if t >= self.start:
            return today in self.days
        return t < self.end and (today - 1) % 7 in self.days


def _globs(names: list[str]) -> tuple[Glob, ...]:
    return tuple(Glob.compile(n) for n in names)


@dataclass(frozen=True)
class Policy:
    quiet: QuietHours | None
    muted: tuple[Glob, ...]
    blocked: tuple[Glob, ...]
    sync_dismissals: bool

    @classmethod
    def compile(cls, stored: dict[str, Any]) -> "Policy":
        p = view(stored)
        q = p["quiet_hours"]
        quiet = None
        if q:
            days = q.get("days")
            quiet = QuietHours(minutes(q["start"]), minutes(q["end"]), ZoneInfo(q["timezone"]),
                               frozenset(range(7)) if days is None else frozenset(days))
        return cls(quiet, _globs(p["muted_apps"]), _globs(p["blocked_apps"]), bool(p["sync_dismissals"]))

    def blocks(self, app: str) -> bool:  # ``app`` already case-folded
        return any(g.matches(app) for g in self.blocked)

    def silences(self, app: str, now: dt.datetime) -> bool:
        if any(g.matches(app) for g in self.muted):
            return True
        return self.quiet is not None and self.quiet.active(now)


def compile_all(stored: dict[str, dict[str, Any]]) -> dict[str, Policy]:
    """Policies of the devices whose preferences differ from the defaults."""
    return {device: Policy.compile(prefs) for device, prefs in stored.items() if view(prefs) != DEFAULTS}
