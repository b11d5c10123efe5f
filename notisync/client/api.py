"""NotiSync client library over Tornado's own HTTP and WebSocket clients.

State lives in one config dir (mode 0700, files 0600: they hold bearer
tokens; passwords are never stored): ``session.json`` (server, user, tokens,
this client's device id), ``devices.json`` (the client-chosen device id per
server and user, reused on every login) and ``watch.json`` (per device, the
last envelope id handed out, where a restarted ``watch`` resumes).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import socket
import time
import uuid
from typing import Any, AsyncIterator, Callable
from urllib.parse import quote, urlencode, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, WebSocketError, websocket_connect

from notisync.client.config import DEVICES, SESSION, WATCH, ClientError, ConfigDir, Json
from notisync.client.keys import KeysMixin

Notifications = list[Json]

NEW, SYNC = "new_notification", "notification_sync"
UPDATED, INVOKED = "notification_updated", "action_invoked"
BACKOFF_MIN, BACKOFF_MAX = 0.5, 10.0
HEALTHY_AFTER = 10.0  # seconds a socket must live before backoff starts over
CLOSE_POLICY = 1008
REFETCH_MAX = 1000  # notifications fetched over REST after sync_required


def _first_time(seen: dict[str, None], key: str | None) -> bool:
    """The server may repeat stream frames: remember recent keys (bounded), drop repeats."""
    if key in seen:
        return False
    if key is not None:
        seen[key] = None
        if len(seen) > 4096:
            del seen[next(iter(seen))]  # dicts keep insertion order: drop the oldest
    return True


class NotiSyncClient(KeysMixin):
    def __init__(self, server_url: str, config_dir: str, device_name: str | None = None) -> None:
        self.server = server_url.rstrip("/")
        parts = urlsplit(self.server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ClientError(f"invalid server URL {server_url!r} (expected http://HOST:PORT)")
        self.config = ConfigDir(config_dir)
        self.device_name = device_name or f"notisync CLI on {socket.gethostname()}"
        self._refresh_lock = asyncio.Lock()

    # -- session ----------------------------------------------------------------
    def session(self) -> Json:
        """Read from disk every time: another process may have refreshed the tokens."""
        s = self.config.read(SESSION)
        if not s.get("access_token"):
            raise ClientError("not logged in (run: notisync login)", code="not_logged_in")
        if s.get("server") != self.server:
            raise ClientError(f"logged in to {s.get('server')}, not {self.server} (run: notisync login)",
                              code="not_logged_in")
        return s

    def device_id(self) -> str:
        device_id = self.session().get("device_id")
        if not device_id:
            raise ClientError("this client has no device (run: notisync login)", code="no_device")
        return str(device_id)

    async def register(self, email: str, password: str) -> Json:
        body = {"email": email, "password": password}
        return (await self._request("POST", "/api/v1/auth/register", body, auth=False))["user"]

    async def login(self, email: str, password: str) -> Json:
        """Store tokens, then register this client as a desktop device (reused on re-login)."""
        data = await self._request("POST", "/api/v1/auth/login", {"email": email, "password": password}, auth=False)
        with self.config.lock():
            self.config.write(SESSION, {"server": self.server, "user": data["user"],
                                        "access_token": data["access_token"],
                                        "refresh_token": data["refresh_token"], "device_id": None})
        device = await self._register_device(data["user"]["id"])
        return {"user": data["user"], "device": device}

    async def _register_device(self, user_id: str) -> Json:
        device = await self._post_device(f"{self.server} {user_id}", self.device_name)
        # Keep the device's own session (revoking this device ends it) and end
        # the one we signed in with, as SPEC "Sessions" asks of a client.
        own = device.pop("session", None)
        with self.config.lock():
            signed_in = self.session()
            update: Json = {"device_id": device["id"]}
            if own:
                update.update(access_token=own["access_token"], refresh_token=own["refresh_token"])
            self.config.write(SESSION, {**signed_in, **update})
        if own:
            await self._fetch("POST", "/api/v1/auth/logout", None, None, signed_in["access_token"], None)
        return device

    async def _post_device(self, slot: str, name: str) -> Json:
        """A desktop device under the id devices.json keeps in ``slot`` (the same one each login)."""
        known = self.config.read(DEVICES)
        body = {"id": known.get(slot) or str(uuid.uuid4()), "device_name": name, "device_type": "desktop"}
        try:
            device = await self._request("POST", "/api/v1/devices", body)
        except ClientError as exc:
            if exc.code not in ("device_revoked", "device_id_taken"):
                raise
            # That id is refused for good (revoked, or another account's): take a new one.
            device = await self._request("POST", "/api/v1/devices", {**body, "id": str(uuid.uuid4())})
        self.config.write(DEVICES, {**known, slot: device["id"]})
        return device

    async def refresh(self, stale: str | None = None) -> Json:
        """New token pair; with ``stale``, skip it if another process already rotated."""
        async with self._refresh_lock:
            with self.config.lock():
                session = self.session()
                if stale is not None and session["access_token"] != stale:
                    return session
                try:
                    data = await self._request("POST", "/api/v1/auth/refresh",
                                               {"refresh_token": session["refresh_token"]}, auth=False)
                except ClientError as exc:
                    if exc.status != 401:
                        raise
                    raise ClientError("session expired (run: notisync login)", exc.code, 401) from None
                session.update(access_token=data["access_token"], refresh_token=data["refresh_token"])
                self.config.write(SESSION, session)
                return session

    # -- HTTP -------------------------------------------------------------------
    async def _request(self, method: str, path: str, body: Any = None, *, params: Json | None = None,
                       auth: bool = True, headers: dict[str, str] | None = None) -> Any:
        token = self.session()["access_token"] if auth else None
        resp = await self._fetch(method, path, body, params, token, headers)
        if token and resp.code == 401 and _error(resp).get("code") == "token_expired":
            token = (await self.refresh(stale=token))["access_token"]
            resp = await self._fetch(method, path, body, params, token, headers)
        if resp.code >= 400:
            raise _api_error(resp, self.server)
        try:
            return json.loads(resp.body) if resp.body else None
        except ValueError:
            raise ClientError(f"{self.server} did not answer JSON; is it a NotiSync server?") from None

    async def _fetch(self, method: str, path: str, body: Any, params: Json | None, token: str | None,
                     headers: dict[str, str] | None) -> HTTPResponse:
        url = self.server + path + ("?" + urlencode(params) if params else "")
        hdrs = {"Accept": "application/json", **(headers or {})}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        req = HTTPRequest(url, method=method, headers=hdrs, body=data, connect_timeout=10,
                          request_timeout=30, allow_nonstandard_methods=True)
        try:
            return await AsyncHTTPClient().fetch(req, raise_error=False)
        except (OSError, HTTPClientError) as exc:  # refused, DNS, TLS, timeout
            raise ClientError(f"cannot reach {self.server}: {_reason(exc)}", code="unreachable") from None

    # -- devices ----------------------------------------------------------------
    async def devices(self) -> list[Json]:
        return (await self._request("GET", "/api/v1/devices"))["devices"]

    async def add_device(self, name: str, device_type: str) -> Json:
        device = await self._request("POST", "/api/v1/devices", {"device_name": name, "device_type": device_type})
        device.pop("session", None)  # that device's own tokens: not this client's to print or keep
        return device

    async def rename_device(self, device_id: str, name: str) -> Json:
        return await self._request("PUT", f"/api/v1/devices/{quote(device_id, safe='')}", {"device_name": name})

    async def remove_device(self, device_id: str) -> None:
        await self._request("DELETE", f"/api/v1/devices/{quote(device_id, safe='')}")
        with self.config.lock():
            if (session := self.session()).get("device_id") == device_id:  # refused from now on
                self.config.write(SESSION, {**session, "device_id": None})

    # -- notifications ----------------------------------------------------------
    async def send(self, app: str, title: str = "", body: str = "", category: str | None = None,
                   priority: int | None = None) -> Json:
        payload = {"app_name": app, "title": title, "body": body, "category": category, "priority": priority}
        payload = {k: v for k, v in payload.items() if v is not None}
        # As a device of its own, so that a watch of this device shows it (client/keys.py).
        return await self.post_as_sender(payload)

    # -- rules, preferences, digest ---------------------------------------------
    async def rules(self) -> list[Json]:
        return (await self._request("GET", "/api/v1/rules"))["rules"]

    async def add_rule(self, rule: Json) -> Json:
        return await self._request("POST", "/api/v1/rules", rule)

    async def update_rule(self, rule_id: str, changes: Json) -> Json:
        return await self._request("PUT", f"/api/v1/rules/{quote(rule_id, safe='')}", changes)

    async def remove_rule(self, rule_id: str) -> None:
        await self._request("DELETE", f"/api/v1/rules/{quote(rule_id, safe='')}")

    async def test_rules(self, sample: Json) -> Json:
        return await self._request("POST", "/api/v1/rules/test", sample)

    async def preferences(self, device_id: str) -> Json:
        return await self._request("GET", f"/api/v1/devices/{quote(device_id, safe='')}/preferences")

    async def set_preferences(self, device_id: str, changes: Json) -> Json:
        return await self._request("PUT", f"/api/v1/devices/{quote(device_id, safe='')}/preferences", changes)

    async def digest(self, date: str | None = None, timezone: str = "UTC") -> Json:
        params = {"timezone": timezone, **({"date": date} if date else {})}
        return await self._request("GET", "/api/v1/digest", params=params)

    async def iter_notifications(self, page_size: int = 50, **filters: Any) -> AsyncIterator[Json]:
        """Every matching notification, newest first, following ``next_cursor``."""
        params = {k: v for k, v in filters.items() if v is not None}
        cursor = None
        while True:
            page_params = {**params, "limit": page_size, **({"before": cursor} if cursor else {})}
            page = await self._request("GET", "/api/v1/notifications", params=page_params)
            for item in page["notifications"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor or not page["notifications"]:
                return

    async def get(self, notification_id: str) -> Json:
        return await self._request("GET", f"/api/v1/notifications/{quote(notification_id, safe='')}")

    async def act(self, notification_id: str, action: str) -> Json:
        path = f"/api/v1/notifications/{quote(notification_id, safe='')}/action"
        return await self._request("PUT", path, {"action": action, "device_id": self.device_id()})

    async def invoke(self, notification_id: str, action_id: str, reply_text: str | None = None) -> Json:
        """One of the notification's actions, for its source device (202)."""
        path = f"/api/v1/notifications/{quote(notification_id, safe='')}/invoke"
        body: Json = {"action_id": action_id, "device_id": self.device_id()}
        if reply_text is not None:
            body["reply_text"] = reply_text
        return await self._request("POST", path, body)

    async def read(self, notification_id: str) -> Json:
        return await self.act(notification_id, "read")

    async def dismiss(self, notification_id: str) -> Json:
        return await self.act(notification_id, "dismissed")

    async def list(self, limit: int = 20, **filters: Any) -> Notifications:
        """Up to ``limit`` notifications, newest first; filters as GET /notifications takes them."""
        items: Notifications = []
        async for item in self.iter_notifications(page_size=min(limit, 200), **filters):
            items.append(item)
            if len(items) >= limit:
                break
        return items

    async def search(self, query: str, limit: int = 20, **filters: Any) -> Notifications:
        return await self.list(limit, q=query, **filters)

    # -- watch ------------------------------------------------------------------
    async def watch(self, on_notice: Callable[[str], None] | None = None) -> AsyncIterator[Json]:
        """Yield frames forever: new_notification, notification_sync, device_status and
        sync_required (then what REST says was missed, marked ``refetched``). Drops are
        retried with backoff; reconnects, and the next run, resume after the last id yielded.
        """
        notice = on_notice or (lambda _msg: None)
        seen: dict[str, None] = {}
        delay, refreshed, first = BACKOFF_MIN, False, True
        while True:
            device_id, started = self.device_id(), time.monotonic()
            try:
                conn = await self._open_socket(device_id)
                async for frame in self._frames(conn, device_id, seen):
                    yield frame
            except ClientError as exc:
                if exc.code != "unreachable" and exc.status != 503 or first:
                    raise  # a first failure is a wrong --server or a dead server: say so
                reason = str(exc)
            else:
                reason = f"connection closed ({conn.close_code} {conn.close_reason or ''})".replace(" )", ")")
                if conn.close_code == CLOSE_POLICY:
                    if "expired" not in (conn.close_reason or "") or refreshed:
                        raise ClientError(f"server closed the connection: {conn.close_reason or 'policy'}",
                                          code="closed")
                    await self.refresh()
                    refreshed = True
                    continue
            first = False
            if time.monotonic() - started > HEALTHY_AFTER:
                delay, refreshed = BACKOFF_MIN, False
            notice(f"{reason}; reconnecting in {delay:.1f} s")
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # jitter: clients don't stampede
            delay = min(delay * 2, BACKOFF_MAX)

    async def _open_socket(self, device_id: str) -> WebSocketClientConnection:
        # A single-use ticket rather than the token: socket URLs end up in proxy logs.
        ticket = (await self._request("POST", "/api/v1/auth/ws-ticket"))["ticket"]
        params = {"ticket": ticket, "device_id": device_id, "last_id": self._position(device_id).get("last_id")}
        url = "ws" + self.server[len("http"):] + "/ws?" + urlencode({k: v for k, v in params.items() if v})
        try:
            return await websocket_connect(HTTPRequest(url, connect_timeout=10, request_timeout=30),
                                           ping_interval=20, ping_timeout=20)
        except (OSError, HTTPClientError, WebSocketError) as exc:
            raise ClientError(f"cannot reach {self.server}: {_reason(exc)}", code="unreachable") from None

    async def _frames(self, conn: WebSocketClientConnection, device_id: str, seen: dict[str, None]
                      ) -> AsyncIterator[Json]:
        try:
            while (msg := await conn.read_message()) is not None:
                frame = _parse(msg)
                kind = frame.get("type")
                if kind == "sync_required":
                    yield frame
                    async for missed in self._refetch(device_id, seen):
                        yield missed
                elif kind == "device_status":
                    yield frame
                elif kind in (NEW, SYNC, UPDATED, INVOKED) and _first_time(seen, frame.get("id")):
                    data = frame.get("data") or {}
                    repeat = kind == NEW and not _first_time(seen, f"n:{data.get('id')}")
                    try:
                        if not repeat:  # already handed out by a refetch
                            yield frame
                    finally:  # once handed out, never again: also on the next run
                        self._save_position(device_id, frame)
        finally:
            conn.close()

    async def _refetch(self, device_id: str, seen: dict[str, None]) -> AsyncIterator[Json]:
        """After sync_required: what REST has that is newer than the newest we handed out."""
        since = self._position(device_id).get("since")
        missed: Notifications = []
        async for item in self.iter_notifications(page_size=50):
            if (since and item["created_at"] <= since) or len(missed) >= (REFETCH_MAX if since else 50):
                break
            if item.get("source_device_id") != device_id:
                missed.append(item)
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for item in reversed(missed):
            if _first_time(seen, f"n:{item['id']}"):
                frame = {"type": NEW, "data": item, "timestamp": now, "refetched": True}
                try:
                    yield frame
                finally:
                    self._save_position(device_id, frame)

    def _position(self, device_id: str) -> Json:
        entry = self.config.read(WATCH).get(device_id)
        return entry if isinstance(entry, dict) else {}

    def _save_position(self, device_id: str, frame: Json) -> None:
        state = self.config.read(WATCH)
        entry = dict(state.get(device_id) or {})
        if frame.get("id"):
            entry["last_id"] = frame["id"]
        created = (frame.get("data") or {}).get("created_at") if frame.get("type") == NEW else None
        if created and created > (entry.get("since") or ""):
            entry["since"] = created
        state[device_id] = entry
        self.config.write(WATCH, state)


def _parse(msg: str | bytes) -> Json:
    try:
        frame = json.loads(msg)
    except ValueError:  # the server only sends JSON; anything else is skipped
        return {}
    return frame if isinstance(frame, dict) else {}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, HTTPClientError):
        return exc.message or f"HTTP {exc.code}"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _error(resp: HTTPResponse) -> Json:
    try:
        err = json.loads(resp.body).get("error") if resp.body else None
    except (ValueError, AttributeError):
        err = None
    return err if isinstance(err, dict) else {}


def _api_error(resp: HTTPResponse, server: str) -> ClientError:
    err = _error(resp)
    if not err:
        return ClientError(f"{server} answered HTTP {resp.code}", status=resp.code)
    code = err.get("code") or "error"
    message = str(err.get("message") or f"HTTP {resp.code}")
    if isinstance(err.get("fields"), dict) and err["fields"]:
        message += ": " + "; ".join(f"{k}: {v}" for k, v in err["fields"].items())
    if resp.headers.get("Retry-After"):
        message += f"; retry in {resp.headers['Retry-After']} s"
    return ClientError(f"{message} ({code})", code=code, status=resp.code)
