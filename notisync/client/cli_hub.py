"""``notisync rules``, ``notisync prefs`` and ``notisync digest``: argparse over the client API.

Same shape as the rest of the command (``cli.py``): results on stdout (an
added rule prints just its id), failures one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Callable

from notisync.client.api import NotiSyncClient
from notisync.client.config import ClientError, Json

CATEGORIES = ("Work", "Personal", "Junk")


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def cmd_rules(client: NotiSyncClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    if args.action == "add":
        out((await client.add_rule(_rule_from(args)))["id"])
    elif args.action == "rm":
        await client.remove_rule(args.id)
    elif args.action == "test":
        sample = {"app_name": args.app, "title": args.title or "", "body": args.body or ""}
        if args.category:
            sample["category"] = args.category
        result = await client.test_rules(sample)
        out(_compact(result) if args.json else
            f"matched: {', '.join(result['matched']) or 'none'}\nresult: {_compact(result['result'])}")
    else:
        for r in await client.rules():
            out(_compact(r) if args.json else
                f"{r['id']}  {r['position']:>4}  {'on ' if r['enabled'] else 'off'}  {r['name'] or '-'}"
                f"  {_compact(r['match'])} -> {_compact(r['action'])}")
    return 0


def _rule_from(args: argparse.Namespace) -> Json:
    match = {k: v for k, v in (("app_name", args.app), ("title_contains", args.title_contains),
                               ("body_contains", args.body_contains), ("category", args.if_category),
                               ("source_device_id", args.from_device)) if v is not None}
    action: Json = {}
    if args.category:
        action["category"] = args.category
    if args.priority is not None:
        action["priority"] = args.priority
    if args.silent:
        action["silent"] = True
    if args.drop:
        action["drop"] = True
    if args.only_types:
        action["only_device_types"] = _csv(args.only_types)
    if args.skip_devices:
        action["skip_device_ids"] = _csv(args.skip_devices)
    if not action:
        raise ClientError("give an action (--category, --priority, --silent, --drop, --only-types, --skip-devices)")
    rule: Json = {"name": args.name or "", "match": match, "action": action, "enabled": not args.disabled}
    if args.position is not None:
        rule["position"] = args.position
    return rule


async def cmd_prefs(client: NotiSyncClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    if args.action == "set":
        changes: Json = {}
        if args.no_quiet:
            changes["quiet_hours"] = None
        elif args.quiet:
            start, sep, end = args.quiet.partition("-")
            if not sep:
                raise ClientError("--quiet takes START-END, e.g. 22:00-07:00")
            quiet: Json = {"start": start.strip(), "end": end.strip(), "timezone": args.timezone or "UTC"}
            if args.days:
                try:
                    quiet["days"] = [int(d) for d in _csv(args.days)]
                except ValueError:
                    raise ClientError("--days takes numbers 0-6 (0 = Monday), e.g. 0,1,2,3,4") from None
            changes["quiet_hours"] = quiet
        if args.mute is not None:
            changes["muted_apps"] = _csv(args.mute)
        if args.block is not None:
            changes["blocked_apps"] = _csv(args.block)
        if args.sync_dismissals is not None:
            changes["sync_dismissals"] = args.sync_dismissals == "on"
        if not changes:
            raise ClientError("nothing to set (see notisync prefs set --help)")
        out(_compact(await client.set_preferences(args.device, changes)))
    else:
        out(_compact(await client.preferences(args.device)))
    return 0


async def cmd_digest(client: NotiSyncClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    d = await client.digest(args.date, args.timezone)
    if args.json:
        out(_compact(d))
        return 0
    out(f"{d['date']} ({d['timezone']}): {d['total']} notifications, {d['unread']} unread")
    out("by category: " + ", ".join(f"{k} {v}" for k, v in d["by_category"].items()))
    for a in d["by_app"]:
        out(f"  {a['count']:>5}  {a['unread']:>5} unread  {a['app_name']}")
    for n in d["top"]:
        out(f"  top: {n['app_name']}: {n['title']}")
    return 0


def _default_zone() -> str:
    tz = os.environ.get("TZ", "")
    return tz if "/" in tz and not tz.startswith(":") else "UTC"


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add rules, prefs and digest to the ``notisync`` parser (``command`` is cli.py's helper)."""
    r = command("rules", cmd_rules, "list, add, remove or test the rules that sort incoming notifications")
    r.add_argument("--json", action="store_true", help="one JSON object per line")
    actions = r.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list rules in order (the default)")
    add = actions.add_parser("add", help="add a rule; prints its id")
    add.add_argument("--name")
    add.add_argument("--app", help="app name; * matches anything (case-insensitive)")
    add.add_argument("--title-contains")
    add.add_argument("--body-contains")
    add.add_argument("--if-category", choices=CATEGORIES, help="match notifications of this category")
    add.add_argument("--from-device", help="match notifications from this device id")
    add.add_argument("--category", choices=CATEGORIES, help="action: set the category")
    add.add_argument("--priority", type=int, help="action: set the priority")
    add.add_argument("--silent", action="store_true", help="action: deliver without sound")
    add.add_argument("--drop", action="store_true", help="action: drop (nothing stored or sent)")
    add.add_argument("--only-types", help="action: only these device types, e.g. mobile,desktop")
    add.add_argument("--skip-devices", help="action: not to these device ids (comma-separated)")
    add.add_argument("--position", type=int)
    add.add_argument("--disabled", action="store_true")
    actions.add_parser("rm", help="delete a rule").add_argument("id")
    test = actions.add_parser("test", help="show which rules match a sample notification (nothing is sent)")
    test.add_argument("--app", required=True)
    test.add_argument("--title")
    test.add_argument("--body")
    test.add_argument("--category", choices=CATEGORIES)

    p = command("prefs", cmd_prefs, "show or change a device's preferences")
    pactions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    pactions.add_parser("show", help="print the device's preferences as JSON").add_argument("device")
    s = pactions.add_parser("set", help="change some of the device's preferences; prints them")
    s.add_argument("device")
    s.add_argument("--quiet", metavar="HH:MM-HH:MM", help="quiet hours (may cross midnight)")
    s.add_argument("--timezone", help="the quiet hours' time zone, e.g. Europe/Paris (default UTC)")
    s.add_argument("--days", help="days the quiet hours start on, 0 = Monday, e.g. 0,1,2,3,4")
    s.add_argument("--no-quiet", action="store_true", help="remove the quiet hours")
    s.add_argument("--mute", metavar="APPS", help="comma-separated apps delivered silently ('' for none)")
    s.add_argument("--block", metavar="APPS", help="comma-separated apps never delivered ('' for none)")
    s.add_argument("--sync-dismissals", choices=("on", "off"))

    d = command("digest", cmd_digest, "summarise one day's notifications")
    d.add_argument("--date", help="YYYY-MM-DD (default: today)")
    d.add_argument("--timezone", default=_default_zone(), help="the day's time zone (default: $TZ, else UTC)")
    d.add_argument("--json", action="store_true")
