"""``notisync forward``: mirror an Android phone's notifications from Termux.

Termux:API's ``termux-notification-list`` prints the notifications the
phone shows now, as a JSON array of ``{id, tag, key, group, packageName,
title, content, when, …}`` (it exists only on Android, with the Termux:API
app installed). Every ``interval`` seconds the forwarder compares that list
with its state file and, holding only a device API key:

- posts each new notification with Android's ``key`` as ``source_key``;
- re-posts one whose text changed (same ``source_key``: the server updates
  it in place where it supports that, else answers 200 with the first);
- marks one that left the phone's list dismissed.

The state file records a notification only after the server accepted it,
and is rewritten after every accepted step. So a restart, a dropped network
or a lost answer can only cause a retry, and a retry with the same
``source_key`` is answered 200 with the notification already stored: never
a duplicate.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from typing import Any, Callable
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from notisync.client.config import ClientError, ConfigDir, Json

FORWARD = "forward.json"
LIST_COMMAND = "termux-notification-list"
IGNORED = ("com.termux",)  # Termux's own "1 session" notification is not news
MAX_SOURCE_KEY = 512
# Android package -> the name people know; others are sent as the package name.
APP_NAMES = {
    "com.whatsapp": "WhatsApp", "org.telegram.messenger": "Telegram", "org.thoughtcrime.securesms": "Signal",
    "com.google.android.gm": "Gmail", "com.google.android.apps.messaging": "Messages",
    "com.android.mms": "Messages", "com.google.android.calendar": "Calendar", "com.Slack": "Slack",
    "com.slack": "Slack", "com.instagram.android": "Instagram", "com.facebook.orca": "Messenger",
    "com.microsoft.teams": "Teams", "com.discord": "Discord", "com.google.android.dialer": "Phone",
}


class Unreachable(Exception):
    """The server did not answer: the cycle stops, and the next one retries."""


def read_phone(command: str = LIST_COMMAND) -> list[Json]:
    """What the phone shows now; ClientError if the command fails or prints no JSON array."""
    try:
        run = subprocess.run([command], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClientError(f"cannot run {command}: {exc} (Termux:API installed? pkg install termux-api)") from None
    if run.returncode != 0:
        raise ClientError(f"{command} failed ({run.returncode}): {run.stderr.strip()[:200]}")
    try:
        items = json.loads(run.stdout or "[]")
    except ValueError:
        raise ClientError(f"{command} printed something other than JSON") from None
    if not isinstance(items, list):
        raise ClientError(f"{command} printed JSON that is not a list")
    return [item for item in items if isinstance(item, dict)]


def source_key(item: Json) -> str | None:
    key = item.get("key")
    if not isinstance(key, str) or not key:
        return None
    # Android keys are short ("0|com.whatsapp|1|null|10134"); a longer one is hashed to fit.
    return key if len(key) <= MAX_SOURCE_KEY else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def as_notification(item: Json) -> Json:
    package = str(item.get("packageName") or "unknown")
    return {
        "app_name": APP_NAMES.get(package, package)[:200],
        "title": str(item.get("title") or "")[:1000],
        "body": str(item.get("content") or "")[:16000],
        "source_key": source_key(item),
    }


def digest(notification: Json) -> str:
    """What must change for the forwarder to re-post (Android bumps ``when`` without news)."""
    text = json.dumps([notification["app_name"], notification["title"], notification["body"]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Forwarder:
    def __init__(self, server: str, key: str, config: ConfigDir, state_name: str = FORWARD,
                 ignored: tuple[str, ...] = IGNORED, say: Callable[[str], None] = print,
                 warn: Callable[[str], None] = print) -> None:
        self.server = server.rstrip("/")
        self.key = key
        self.config = config
        self.state_name = state_name
        self.ignored = set(ignored)
        self.say = say
        self.warn = warn

    def _state(self) -> Json:
        state = self.config.read(self.state_name)
        if state.get("server") != self.server:  # another server knows none of these ids
            state = {"server": self.server, "known": {}}
        state.setdefault("known", {})
        return state

    async def cycle(self, items: list[Json]) -> int:
        """One pass over the phone's list; how many changes reached the server. Raises Unreachable."""
        state = self._state()
        known: dict[str, Json] = state["known"]
        now = {}
        for item in items:
            if str(item.get("packageName")) in self.ignored:
                continue
            notification = as_notification(item)
            if notification["source_key"] is not None:
                now[notification["source_key"]] = notification
        changes = 0
        for key, notification in now.items():
            seen = known.get(key)
            mark = digest(notification)
            if seen is not None and seen["digest"] == mark:
                continue
            try:
                stored = await self._post(notification)
            except ClientError as exc:
                if exc.status == 401:
                    raise
                # Refused for good (say, too large): recorded, so it is not retried every cycle.
                self.warn(f"skipped {key}: {exc}")
                stored = {"id": None}
            known[key] = {"id": stored["id"], "digest": mark}
            self.config.write(self.state_name, state)  # after each accepted step: a crash repeats none
            self.say(f"{'updated' if seen else 'posted'} {notification['app_name']}: {notification['title']}")
            changes += 1
        for key in [k for k in known if k not in now]:
            if known[key]["id"] is not None:
                await self._dismiss(known[key]["id"])
            del known[key]
            self.config.write(self.state_name, state)
            self.say(f"dismissed {key}")
            changes += 1
        return changes

    async def _post(self, notification: Json) -> Json:
        code, body = await self._call("POST", "/api/v1/notifications", notification)
        if code in (200, 201):
            return body
        raise _failure(code, body)

    async def _dismiss(self, notification_id: str) -> None:
        path = f"/api/v1/notifications/{quote(notification_id, safe='')}/action"
        code, body = await self._call("PUT", path, {"action": "dismissed"})
        if code not in (200, 404):  # 404: already gone (expired, or deleted with the account)
            raise _failure(code, body)

    async def _call(self, method: str, path: str, payload: Json) -> tuple[int, Any]:
        req = HTTPRequest(self.server + path, method=method, body=json.dumps(payload),
                          headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
                          connect_timeout=10, request_timeout=30)
        try:
            resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        except (OSError, HTTPClientError) as exc:
            raise Unreachable(f"cannot reach {self.server}: {exc}") from None
        if resp.code == 599 or resp.code in (502, 503, 504):  # no answer, or a dependency is down
            raise Unreachable(f"{self.server} answered {resp.code}; will retry")
        if resp.code == 429:
            raise Unreachable(f"rate limited; retry after {resp.headers.get('Retry-After', '?')} s")
        try:
            return resp.code, json.loads(resp.body) if resp.body else None
        except ValueError:
            raise Unreachable(f"{self.server} did not answer JSON (HTTP {resp.code})") from None


def _failure(code: int, body: Any) -> ClientError:
    err = body.get("error") if isinstance(body, dict) else None
    message = err.get("message") if isinstance(err, dict) else f"HTTP {code}"
    if code == 401:
        return ClientError(f"the API key was refused ({message}); make a new one: notisync api-key create",
                           code="unauthorized", status=401)
    return ClientError(f"the server refused a notification: {message} (HTTP {code})", status=code)


def load_key(key_file: str | None) -> str:
    """The API key: from --key-file, else NOTISYNC_API_KEY (never on the command line, where ps shows it)."""
    if key_file:
        try:
            with open(os.path.expanduser(key_file), encoding="utf-8") as f:
                key = f.read().strip()
        except OSError as exc:
            raise ClientError(f"cannot read the key file: {exc}") from None
    else:
        key = os.environ.get("NOTISYNC_API_KEY", "").strip()
    if not key:
        raise ClientError("no API key (use --key-file, or set NOTISYNC_API_KEY; make one: notisync api-key create)")
    return key


async def run(forwarder: Forwarder, command: str, interval: float, once: bool,
              warn: Callable[[str], None]) -> int:
    """Poll until cancelled (or once). A refused key ends the loop; anything passing only waits."""
    while True:
        try:
            items = await asyncio.to_thread(read_phone, command)
            await forwarder.cycle(items)
        except Unreachable as exc:
            if once:
                raise ClientError(f"{exc} (nothing lost: the next run retries)", code="unreachable") from None
            warn(f"{exc}; retrying in {interval:g} s")
        except ClientError as exc:
            if once or exc.status == 401:
                raise
            warn(f"{exc}; retrying in {interval:g} s")
        if once:
            return 0
        await asyncio.sleep(interval)
