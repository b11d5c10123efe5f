"""The client's device API keys: managing them, and the key ``send`` posts with.

A mixin of ``NotiSyncClient`` (client/api.py), which provides ``_request``,
``_fetch``, ``session`` and ``config``.

Why ``send`` posts as a device of its own: the server never sends a device
its own notifications, so if ``send`` posted as the CLI's device, a
``watch`` running on the same computer (the same device) would print
nothing — the most natural first try. ``send`` therefore posts as a second
device, "notisync send on HOST", with a device API key kept in
``session.json``: then ``watch`` shows what ``send`` sent, as it would show
what a phone sent. A key, not a session, because a key needs no refresh;
``logout`` revokes it.
"""
from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import quote

from notisync.client.config import SESSION, ClientError, Json

SENDER_KEY_NAME = "notisync send"


def _path(*parts: str) -> str:
    return "/api/v1/devices/" + "/".join(quote(p, safe="") for p in parts)


class KeysMixin:
    server: str
    config: Any
    _request: Any
    _fetch: Any
    _post_device: Any
    session: Any

    # -- device API keys ----------------------------------------------------------
    async def create_api_key(self, device_id: str, name: str | None = None) -> Json:
        return await self._request("POST", _path(device_id, "api-keys"), {"name": name} if name else {})

    async def api_keys(self, device_id: str) -> list[Json]:
        return (await self._request("GET", _path(device_id, "api-keys")))["api_keys"]

    async def revoke_api_key(self, device_id: str, key_id: str) -> None:
        await self._request("DELETE", _path(device_id, "api-keys", key_id))

    async def find_api_key(self, key_id: str) -> str:
        """The id of the device that holds this key (keys are addressed under their device)."""
        for device in (await self._request("GET", "/api/v1/devices"))["devices"]:
            if any(k["id"] == key_id for k in await self.api_keys(device["id"])):
                return str(device["id"])
        raise ClientError(f"API key not found: {key_id}", code="api_key_not_found", status=404)

    # -- the key send posts with ----------------------------------------------------------
    async def post_as_sender(self, payload: Json) -> Json:
        """POST /notifications as the "notisync send" device; its key is made (again) when needed."""
        for attempt in range(2):
            key = await self._sender_key(renew=attempt > 0)
            resp = await self._fetch("POST", "/api/v1/notifications", payload, None, key, None)
            if resp.code != 401:
                break
        from notisync.client.api import _api_error  # one error format for every request

        if resp.code >= 400:
            raise _api_error(resp, self.server)
        return json.loads(resp.body)

    def sender_device_id(self) -> str | None:
        return (self.session().get("sender") or {}).get("device_id")

    async def _sender_key(self, renew: bool = False) -> str:
        sender = self.session().get("sender") or {}
        if sender.get("key") and not renew:
            return str(sender["key"])
        user_id = self.session()["user"]["id"]
        device = await self._post_device(f"{self.server} {user_id} sender", f"notisync send on {socket.gethostname()}")
        # The device comes with a session; the key replaces it, so end it at once.
        own = device.get("session") or {}
        if own.get("access_token"):
            await self._fetch("POST", "/api/v1/auth/logout", None, None, own["access_token"], None)
        created = await self.create_api_key(device["id"], SENDER_KEY_NAME)
        with self.config.lock():
            session = self.session()
            session["sender"] = {"device_id": device["id"], "key_id": created["id"], "key": created["key"]}
            self.config.write(SESSION, session)
        return str(created["key"])

    # -- who and logout -----------------------------------------------------------------
    async def whoami(self) -> Json:
        """The signed-in user and this client's device, checked with the server."""
        session = self.session()
        devices = (await self._request("GET", "/api/v1/devices"))["devices"]
        own = next((d for d in devices if d["id"] == session.get("device_id")), None)
        return {"server": self.server, "user": session["user"], "device": own}

    async def logout(self) -> None:
        """End the session on the server and revoke send's key; the local tokens go in any case."""
        session = self.session()
        sender = session.get("sender") or {}
        try:
            if sender.get("key_id"):
                await self._fetch("DELETE", _path(sender["device_id"], "api-keys", sender["key_id"]),
                                  None, None, session["access_token"], None)
            await self._fetch("POST", "/api/v1/auth/logout", None, None, session["access_token"], None)
        finally:
            with self.config.lock():
                self.config.write(SESSION, {"server": self.server})  # the server stays the default
