"""``notisync desktop``: mirrored notifications as native desktop pop-ups, both ways.

A long-running agent on this computer's own device (the device-bound
session ``notisync login`` stored). It follows the device's sync stream
through ``NotiSyncClient.watch`` (reconnects, resumes after the last id it
handled, refetches after ``sync_required``) and keeps the desktop in step:

- ``new_notification`` shows a pop-up (through ``desktop-notifier``: the
  freedesktop Notifications D-Bus API on Linux, also macOS and Windows);
  ``notification_updated`` replaces it in place; a ``notification_sync``
  that dismisses or reads it elsewhere withdraws it.
- Closing the pop-up sends ``dismissed``, clicking it ``clicked``; its
  buttons and reply field invoke the notification's actions, which the
  phone receives as ``action_invoked``.
- What it has shown (notification id -> content version) is kept in the
  config dir (``desktop.json``), so a reconnect, a server restart or a
  restart of the agent never shows anything twice; actions it could not
  send yet wait there too and are retried.
- On start, more than ``--backlog`` (5) notifications missed while it was
  not running collapse into one summary pop-up instead of a flood.

Imports nothing of the server (``notisync.client`` only).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from notisync.client.api import NEW, SYNC, UPDATED, NotiSyncClient
from notisync.client.config import WATCH, ClientError, Json

log = logging.getLogger(__name__)

STATE = "desktop.json"
BACKLOG_MAX = 5  # missed notifications shown one by one on start; more collapse into a summary
KEEP_SHOWN = 2000  # notification ids remembered (oldest forgotten first)
RETRY_SECONDS = 5.0  # how often actions that could not be sent are retried
BACKLOG_SCAN = 1000  # notifications read at most to count a backlog
BUTTON_PREFIX = "ns:"  # D-Bus action keys: never "default" or "inline-reply", which mean something else


def load_notifier(app_name: str = "NotiSync") -> Any:
    """desktop-notifier's DesktopNotifier, or a ClientError saying how to install it."""
    try:
        from desktop_notifier import DesktopNotifier
    except ImportError:
        raise ClientError("notisync desktop needs desktop-notifier: pip install 'notisync[desktop]'") from None
    return DesktopNotifier(app_name=app_name, app_icon=None)


def urgency_of(n: Json) -> str:
    """low for silent (rules may set it) or low-priority notifications, critical from priority 2."""
    if n.get("silent") or (n.get("priority") or 0) < 0:
        return "low"
    return "critical" if (n.get("priority") or 0) >= 2 else "normal"


def summary_of(n: Json) -> str:
    title, app = (n.get("title") or "").strip(), (n.get("app_name") or "").strip()
    return f"{app}: {title}" if title and app else title or app or "Notification"


class DesktopState:
    """``desktop.json`` in the config dir, per device: what was shown, what is still to send."""

    def __init__(self, client: NotiSyncClient, device_id: str) -> None:
        self._config = client.config
        self._device_id = device_id
        entry = self._config.read(STATE).get(device_id) or {}
        shown = entry.get("shown") if isinstance(entry, dict) else None
        outbox = entry.get("outbox") if isinstance(entry, dict) else None
        self.shown: dict[str, int] = dict(shown) if isinstance(shown, dict) else {}
        self.outbox: list[Json] = list(outbox) if isinstance(outbox, list) else []

    def mark_shown(self, notification_id: str, version: int) -> None:
        self.shown.pop(notification_id, None)
        self.shown[notification_id] = version  # re-insert: newest last, oldest forgotten first
        while len(self.shown) > KEEP_SHOWN:
            del self.shown[next(iter(self.shown))]

    def save(self) -> None:
        with self._config.lock():
            state = self._config.read(STATE)
            state[self._device_id] = {"shown": self.shown, "outbox": self.outbox}
            self._config.write(STATE, state)


class DesktopAgent:
    def __init__(self, client: NotiSyncClient, notifier: Any, backlog_max: int = BACKLOG_MAX,
                 notice: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.notifier = notifier
        self.backlog_max = backlog_max
        self.notice = notice or (lambda _msg: None)
        self.device_id = client.device_id()
        self.state = DesktopState(client, self.device_id)
        self.popups: dict[str, str] = {}  # notification id -> pop-up identifier on screen
        self.platform_ids: dict[str, int] = {}  # notification id -> the D-Bus server's id of its pop-up
        self._tasks: set[asyncio.Task[Any]] = set()
        self._capabilities: frozenset[Any] = frozenset()
        self._outbox_wake = asyncio.Event()

    # -- main loop ----------------------------------------------------------------
    async def run(self) -> None:
        self._capabilities = await self.notifier.get_capabilities()
        await self.collapse_backlog()
        sender = asyncio.ensure_future(self._send_outbox_forever())
        try:
            async for frame in self.client.watch(on_notice=self.notice):
                await self.handle(frame)
        finally:
            sender.cancel()

    async def handle(self, frame: Json) -> None:
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind == NEW:
            await self._on_new(data)
        elif kind == UPDATED:
            await self._on_updated(data)
        elif kind == SYNC and (data.get("is_dismissed") or data.get("is_read")):
            await self._withdraw(str(data.get("notification_id")))

    async def _on_new(self, n: Json) -> None:
        nid = str(n.get("id"))
        if nid in self.state.shown or n.get("is_dismissed"):
            return  # a replay after a reconnect, or dismissed before it got here
        await self._show(n)

    async def _on_updated(self, n: Json) -> None:
        nid, version = str(n.get("id")), int(n.get("version") or 1)
        if self.state.shown.get(nid, 0) >= version:
            return  # that version (or a newer one) is already on screen or was
        if nid in self.popups:
            await self._clear(nid)  # replace in place: the old pop-up goes, the new one comes
        elif n.get("is_dismissed") or n.get("is_read"):
            self.state.mark_shown(nid, version)  # handled elsewhere already: remember, show nothing
            self.state.save()
            return
        await self._show(n)

    async def _withdraw(self, nid: str) -> None:
        if nid in self.popups:
            await self._clear(nid)

    async def _clear(self, nid: str) -> None:
        identifier = self.popups.pop(nid)
        self.platform_ids.pop(nid, None)
        try:
            await self.notifier.clear(identifier)  # closed "programmatically": no dismissed callback
        except Exception as exc:  # already gone from the screen
            log.debug("clearing pop-up %s: %r", identifier, exc)

    # -- pop-ups --------------------------------------------------------------------
    async def _show(self, n: Json) -> None:
        from desktop_notifier import Button, Notification, ReplyField, Urgency

        nid, version = str(n["id"]), int(n.get("version") or 1)
        buttons, reply = [], None
        can_reply = any(c.name == "REPLY_FIELD" for c in self._capabilities)
        for action in n.get("actions") or []:
            action_id = str(action.get("id"))
            if action.get("type") == "reply":
                if can_reply and reply is None:
                    reply = ReplyField(title=action.get("label") or "Reply",
                                       on_replied=self._callback(self._invoke, nid, action_id))
                continue  # no text field on this desktop: a reply cannot be typed here
            buttons.append(Button(title=str(action.get("label") or action_id), identifier=BUTTON_PREFIX + action_id,
                                  on_pressed=self._callback(self._invoke, nid, action_id)))
        identifier = f"{nid}:{version}"
        popup = Notification(
            title=summary_of(n), message=n.get("body") or "",
            urgency={"low": Urgency.Low, "critical": Urgency.Critical}.get(urgency_of(n), Urgency.Normal),
            buttons=tuple(buttons), reply_field=reply,
            on_clicked=self._callback(self._act, nid, "clicked"),
            on_dismissed=self._callback(self._act, nid, "dismissed"),
            identifier=identifier,
        )
        await self.notifier.send_notification(popup)
        self.popups[nid] = identifier
        platform_id = self._platform_id(identifier)
        if platform_id is not None:
            self.platform_ids[nid] = platform_id
        self.state.mark_shown(nid, version)
        self.state.save()

    def _callback(self, func: Callable[..., Any], *args: Any) -> Callable[..., None]:
        """A desktop-notifier callback (called synchronously on the loop) that runs ``func`` as a task."""
        def fire(*more: Any) -> None:
            task = asyncio.ensure_future(func(*args, *more))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return fire

    async def collapse_backlog(self) -> None:
        """More than ``backlog_max`` missed since the last run: one summary pop-up instead.

        Missed = unread and not dismissed, from another device, newer than
        the newest notification this device was handed (or than the device
        itself on a first run), not yet shown. Collapsed ones are remembered
        as shown, so the stream's replay that follows shows nothing more;
        ones already read elsewhere are remembered too (never flashed up).
        """
        since = (self.client.config.read(WATCH).get(self.device_id) or {}).get("since")
        if not since:
            mine = [d for d in await self.client.devices() if d.get("id") == self.device_id]
            since = mine[0].get("created_at") if mine else None
        missed: list[Json] = []
        seen_read: list[Json] = []
        async for n in self.client.iter_notifications(page_size=100, is_dismissed="false"):
            if (since and n["created_at"] <= since) or len(missed) + len(seen_read) >= BACKLOG_SCAN:
                break
            if n.get("source_device_id") != self.device_id and n["id"] not in self.state.shown:
                (seen_read if n.get("is_read") else missed).append(n)
        for n in seen_read:
            self.state.mark_shown(n["id"], int(n.get("version") or 1))
        if len(missed) > self.backlog_max:
            from desktop_notifier import Notification, Urgency

            lines = [summary_of(n) for n in missed[:5]] + (["…"] if len(missed) > 5 else [])
            await self.notifier.send_notification(Notification(
                title=f"{len(missed)} notifications while you were away", message="\n".join(lines),
                urgency=Urgency.Low, identifier=f"backlog:{missed[0]['id']}",
            ))
            for n in missed:
                self.state.mark_shown(n["id"], int(n.get("version") or 1))
            self.notice(f"{len(missed)} missed notifications collapsed into one pop-up")
        # else: few enough, the stream's replay shows each
        self.state.save()

    def _platform_id(self, identifier: str) -> int | None:
        """The freedesktop server's id of a pop-up (None on other platforms).

        desktop-notifier forgets a pop-up once its action fires, and some
        servers (dunst) leave it on screen after a button or a click; the
        agent closes it itself then, by this id. Read from the D-Bus
        backend's map, guarded: a later library version without it only
        loses that close.
        """
        backend = getattr(self.notifier, "_backend", None)
        mapping = getattr(backend, "_platform_to_interface_notification_identifier", None)
        try:
            return mapping.inverse.get(identifier) if mapping is not None else None
        except AttributeError:
            return None

    async def _close_after_action(self, nid: str) -> None:
        platform_id = self.platform_ids.pop(nid, None)
        interface = getattr(getattr(self.notifier, "_backend", None), "interface", None)
        if platform_id is None or interface is None:
            return
        try:
            await interface.call_close_notification(platform_id)
        except Exception as exc:  # already closed: nothing to do
            log.debug("closing pop-up %s: %r", platform_id, exc)

    # -- what the desktop sends ---------------------------------------------------------
    async def _act(self, nid: str, action: str) -> None:
        self.popups.pop(nid, None)  # the pop-up is gone (closed or clicked)
        if action == "clicked":
            await self._close_after_action(nid)
        else:
            self.platform_ids.pop(nid, None)
        await self._queue({"kind": "act", "notification_id": nid, "action": action})

    async def _invoke(self, nid: str, action_id: str, reply_text: str | None = None) -> None:
        self.popups.pop(nid, None)
        await self._close_after_action(nid)
        item: Json = {"kind": "invoke", "notification_id": nid, "action_id": action_id}
        if reply_text is not None:
            item["reply_text"] = reply_text
        await self._queue(item)

    async def _queue(self, item: Json) -> None:
        """Persist first, then send: an action taken while offline is sent when the server is back."""
        self.state.outbox.append(item)
        self.state.save()
        self._outbox_wake.set()

    async def _send_outbox_forever(self) -> None:
        while True:
            await self.send_outbox()
            self._outbox_wake.clear()
            try:
                await asyncio.wait_for(self._outbox_wake.wait(), RETRY_SECONDS if self.state.outbox else None)
            except asyncio.TimeoutError:
                pass

    async def send_outbox(self) -> None:
        while self.state.outbox:
            item = self.state.outbox[0]
            try:
                if item.get("kind") == "invoke":
                    await self.client.invoke(item["notification_id"], item["action_id"], item.get("reply_text"))
                else:
                    await self.client.act(item["notification_id"], item["action"])
            except ClientError as exc:
                if exc.status is None or exc.status >= 500 or exc.status in (401, 429):
                    self.notice(f"could not send {item.get('action') or item.get('action_id')}: {exc}; will retry")
                    return  # unreachable or unavailable: keep it, retry later
                self.notice(f"{item.get('action') or item.get('action_id')} refused: {exc}")
            self.state.outbox.pop(0)
            self.state.save()


async def run_desktop(client: NotiSyncClient, backlog_max: int, notice: Callable[[str], None]) -> None:
    agent = DesktopAgent(client, load_notifier(), backlog_max=backlog_max, notice=notice)
    await agent.run()
